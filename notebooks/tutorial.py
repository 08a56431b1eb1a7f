# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Explaining an image classifier with Grad-CAM
#
# A classifier hands back a label and a probability, but not *where* in the picture it found the
# evidence. Grad-CAM (Selvaraju et al., 2017) answers that cheaply: it takes the feature maps of one
# late layer, weighs each map by how much the class score would change if that map grew, and adds
# them up into a coarse heatmap.
#
# **Part 1** follows the original post's path: load a picture, preprocess it, predict, find the
# layer, write a `GradCAM` class with two hooks, draw its heatmap on the picture, then one heatmap
# for each of the post's nine classes. **Part 2** goes further: where the short class goes wrong,
# which layer to use, and Grad-CAM's relatives. The companion report (`report.ipynb`) measures on
# 1000 validation photos how far such heatmaps can be trusted.
#
# Everything runs offline on a CPU. Apart from the short class of step 7, the code lives in the
# `gradcam_tutorial` package beside this notebook, which the project's tests check.

# %% tags=["setup"]
import os
import warnings

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm's notebook hint, not ours
import cv2
import matplotlib.pyplot as plt
import numpy as np
import torch
from pyxtend import struct

from gradcam_tutorial import GradCAM, create_model, demo_grid, explain, get_spec, imagenet_categories, load_image
from gradcam_tutorial import classes as C
from gradcam_tutorial.classes import POST_CLASSES, post_categories
from gradcam_tutorial.data import CAT_AND_DOG, DownloadError, fetch
from gradcam_tutorial.layers import last_conv2d, last_spatial_layer
from gradcam_tutorial.regions import halves, quadrants, region_shares
from gradcam_tutorial.viz import overlay, overlay_grid, show_overlay

torch.manual_seed(0)
torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))  # the committed outputs are tested with 2 and 1
np.set_printoptions(precision=2, suppress=True)

# %% [markdown]
# ## Parameters
#
# * `MODEL`: `"efficientnet_lite0"` has real ImageNet weights that install with pip, so it works
#   offline, as do the larger `"efficientnet_lite1"` and `"efficientnet_lite2"` (240 and 260 pixels
#   in). `"resnet18"` is the post's model; it needs torchvision's weights, downloaded once on a
#   connected machine.
# * `IMAGE`: `"grid"` is a picture of four objects built from photos that ship with scikit-image
#   and matplotlib, so we know what is where. `"cat_and_dog"` is the post's photo of a dog and a
#   cat in hats (downloaded by URL, checked by sha256). Anything else is the path of your own picture.

# %% tags=["parameters"]
MODEL = "efficientnet_lite0"
IMAGE = "grid"

# %% [markdown]
# ## 1. Load an image
#
# `load_image` returns RGB pixels as an image viewer shows them (a phone's EXIF rotation applied,
# transparency laid on white), so the heatmap will line up with what you see. To read heatmaps by
# numbers we split the picture into named regions: the grid's four tiles, the post photo's two
# halves (dog left, cat right), or the four quadrants of your own picture.

# %% caption="The picture to explain, before any processing."
if IMAGE == "grid":
    image, tiles = demo_grid()
    regions = {f"{tile.label.split()[-1]} tile": tile.box for tile in tiles}
elif IMAGE == "cat_and_dog":
    image, tiles = load_image(fetch(CAT_AND_DOG)), []
    regions = halves(image.size)
else:
    image, tiles = load_image(IMAGE), []
    regions = quadrants(image.size)
print(f"image: {image.width}x{image.height} pixels")
for name, box in regions.items():
    print(f"  {name:22s} (left, top, right, bottom) = {box}")
plt.figure(figsize=(4, 4))
plt.imshow(image)
plt.axis("off")
plt.show()

# %% [markdown]
# ## 2. Create the model
#
# `create_model` builds the network, loads its ImageNet weights with `torch.load(...,
# weights_only=True)` (a weights file is data, and a file that would run code is refused) and puts
# it in **eval mode**: in training mode dropout would switch units off at random and batch
# normalisation would use the statistics of this one picture, so the prediction would not be the
# trained model's.

# %%
model, spec = create_model(MODEL)
print(spec.description)
print("eval mode:", not model.training)

# %% [markdown]
# ## 3. Preprocess
#
# A network recognises a picture only when it is prepared the way its training pictures were, so
# each model in the package's registry carries its own recipe. EfficientNet-Lite0 sees the centre
# crop that `Resize(256)` then `CenterCrop(224)` keep, with each channel scaled to [-1, 1]; the
# post's ResNet-18 stretches the whole photo with `Resize((224, 224))` and normalises with the
# ImageNet mean and standard deviation. `pixel_box` is the part of the photo the network sees: step
# 8 puts the heatmap back there.

# %%
box = spec.pixel_box(image.size)
x = spec.preprocess(image)
print("the network sees (left, top, right, bottom):", box)
print("input tensor:", tuple(x.shape), x.dtype)

# %% [markdown]
# The tensor is a batch of one picture: `(batch, channels, height, width)`.
#
# ## 4. Predict
#
# The network returns one score per class, the **logits**; `struct` from pyxtend shows their shape,
# as in the post. Softmax turns them into probabilities that add up to one.

# %%
names = imagenet_categories()
with torch.no_grad():
    logits = model(x)
print(struct(logits))
probabilities = torch.softmax(logits, dim=1)[0]
values, indices = probabilities.topk(5)
top = int(indices[0])
for p, i in zip(values.tolist(), indices.tolist(), strict=True):
    print(f"{i:4d}  {names[i]:24s} {p:6.2%}")

# %% [markdown]
# ## 5. Class names
#
# The names above come from torchvision's weight metadata, which needs no download. The post
# downloads a JSON list instead. Both list the same 1000 classes in the same order, with different
# wording for some, so the index is what identifies a class. The post's nine classes in both:

# %%
try:
    post_names = post_categories()
    for i in POST_CLASSES:
        print(f"{i:4d}  torchvision {names[i]!r:20s} post {post_names[i]!r}")
except DownloadError as error:  # offline without the mirror: say so and carry on
    print("the post's class list is not available here:", error)

# %% [markdown]
# ## 6. Find the target layer
#
# Grad-CAM needs a layer whose output is still a grid of positions, each holding a vector of
# features. The post scans `named_modules()` for the last `nn.Conv2d`, but its output is not yet
# what the classifier reads: batch normalisation and an activation follow it. We take the last
# module, in the order the forward pass runs them, whose output is still spatial: the feature map the
# classifier averages (`layer4` in ResNet-18; in EfficientNet-Lite0, `features`, a pass-through the
# registry adds after the last activation, because the library's own activation module also runs
# at the stem).

# %%
print("the post's scan, the last nn.Conv2d:", last_conv2d(model))
print("the last spatial output in execution order:", last_spatial_layer(model))
print("the registry's default layer:", spec.target_layer)
layer = dict(model.named_modules())[spec.target_layer]

# %% [markdown]
# ## 7. Grad-CAM with two hooks
#
# For a class `c` with score `y_c` (the logit, before softmax) and a layer with `K` feature maps
# `A_k`, Grad-CAM computes
#
# $$ w_k = \frac{1}{HW} \sum_{i,j} \frac{\partial y_c}{\partial A_k[i,j]}, \qquad
#    L_c = \mathrm{ReLU}\Big(\sum_k w_k A_k\Big). $$
#
# As in the post, two hooks on the layer collect `A` and `∂y_c/∂A`: a **forward hook**, which
# PyTorch calls with the layer's output during the forward pass, and a **full backward hook**, which
# it calls with the gradient of that output during `backward()`. The class below is our own
# teaching version: one forward and one backward pass per heatmap, divided by its maximum.


# %%
class PostStyleGradCAM:
    """Grad-CAM the way the original post builds it: a teaching version, with its flaws (Part 2)."""

    def __init__(self, model, layer):
        self.model = model
        self.activations = None
        self.gradients = None
        self.handles = [
            layer.register_forward_hook(self.save_activations),
            layer.register_full_backward_hook(self.save_gradients),
        ]

    def save_activations(self, module, inputs, output):
        self.activations = output.detach()  # A: (1, K, h, w)

    def save_gradients(self, module, grad_input, grad_output):
        self.gradients = grad_output[0].detach()  # dy_c/dA: (1, K, h, w)

    def compute_heatmap(self, x, class_idx=None):
        self.model.zero_grad()
        logits = self.model(x)  # the forward hook stores A
        if class_idx is None:
            class_idx = int(logits.argmax())
        logits[0, class_idx].backward()  # the backward hook stores the gradient
        weights = self.gradients.mean(dim=(2, 3), keepdim=True)  # w_k
        cam = torch.relu((weights * self.activations).sum(dim=1))[0]  # ReLU(sum_k w_k A_k)
        return (cam / cam.max()).numpy(), class_idx

    def remove(self):  # not in the post: take the hooks off the layer again
        for handle in self.handles:
            handle.remove()


# %% [markdown]
# The heatmap of the top class has the layer's resolution: one value per position of its grid.

# %%
post_cam = PostStyleGradCAM(model, layer)
heatmap, class_idx = post_cam.compute_heatmap(x)
post_cam.remove()
model.zero_grad(set_to_none=True)
print(f"{names[class_idx]} (index {class_idx}): a {heatmap.shape[0]}x{heatmap.shape[1]} heatmap")
print(heatmap)

# %% [markdown]
# ## 8. Draw it on the picture
#
# The post's recipe, step by step: resize the map with OpenCV to the part of the photo the network
# saw (the rest stays 0: nothing there went in), scale to 0-255, colour it with JET, and blend 0.6
# of the photo with 0.4 of the colours. OpenCV returns colours in **BGR** order; blended with an RGB
# photo without converting, the hottest regions would come out blue.

# %% caption="The top class's heatmap drawn by hand with OpenCV: JET colours, 0.6 of the photo and 0.4 of the colours."
left, top_edge, right, bottom = box
photo = np.asarray(image)  # RGB, uint8, (height, width, 3)
heat = np.zeros(photo.shape[:2], dtype=np.float32)
heat[top_edge:bottom, left:right] = cv2.resize(
    heatmap, (right - left, bottom - top_edge), interpolation=cv2.INTER_LINEAR
)
colours = cv2.applyColorMap(np.uint8(np.round(255 * heat)), cv2.COLORMAP_JET)  # BGR
colours = cv2.cvtColor(colours, cv2.COLOR_BGR2RGB)
blended = cv2.addWeighted(photo, 0.6, colours, 0.4, 0)
hottest = cv2.applyColorMap(np.uint8([[255]]), cv2.COLORMAP_JET)
print(
    "JET's hottest colour as OpenCV returns it, BGR:",
    hottest[0, 0],
    "-> RGB:",
    cv2.cvtColor(hottest, cv2.COLOR_BGR2RGB)[0, 0],
)
plt.figure(figsize=(4, 4))
plt.imshow(blended)
plt.title(f"{names[class_idx]}, by hand")
plt.axis("off")
plt.show()

# %% [markdown]
# ## 9. The same with the package
#
# The package's `GradCAM` computes the same map without the short class's pitfalls (Part 2 shows
# each), and `explain` places it on the photo for any list of classes. Both are checked against
# the steps above: the map to 1e-6, the overlay to 2 of 255 levels per channel (OpenCV's and
# PyTorch's bilinear resize round the last bit differently, which can move a pixel to the next colour).

# %%
with GradCAM(model, spec.target_layer) as cam:
    package_map, package_class, _ = cam.compute_heatmap(x)
explanation = explain(image, model, spec, [package_class])
package_overlay = overlay(image, explanation.heatmap(0), alpha=0.4, colormap="jet")
print("same class:", package_class == class_idx)
print("same heatmap within 1e-6:", bool(np.abs(package_map - heatmap).max() <= 1e-6))
print("same overlay within 2/255:", bool(np.abs(package_overlay.astype(int) - blended).max() <= 2))

# %% [markdown]
# JET's bright yellow and cyan bands look like edges that are not in the data. A perceptually
# uniform colour map such as **viridis** changes brightness steadily with the value; the figures
# from here on use it, with a colour bar, and a dashed outline around the part the network saw.

# %% caption="The top class's map in JET, as in the post, and in viridis; dashed: the part the network saw."
fig, axes = plt.subplots(1, 2, figsize=(9, 4))
for ax, colormap in zip(axes, ("jet", "viridis"), strict=True):
    show_overlay(ax, image, explanation.heatmap(0), f"{names[class_idx]}, {colormap}", colormap, box=explanation.box)
plt.show()

# %% [markdown]
# ## 10. Heatmaps per class
#
# The question the post ends with: where would each class be? Here are its nine classes, all from
# **one** forward pass. Each map is scaled to [0, 1] on its own, so it shows where the evidence for
# its class lies, not how much of it there is: the probability in each title says that.

# %% caption="The post's nine classes, one forward pass, each map scaled on its own; dashed: what the network saw."
per_class = explain(image, model, spec, list(POST_CLASSES))
titles = [
    f"{n} ({i})\n{p:.3%}"
    for n, i, p in zip(per_class.class_names, per_class.class_indices, per_class.probabilities, strict=True)
]
fig = overlay_grid(image, per_class.heatmaps, titles, colormap="viridis", box=per_class.box)
plt.show()

# %% [markdown]
# What the maps show, in numbers: the share of each map's mass in each region of step 1, and the
# region with the largest share. On the grid we know the cat classes belong to the cat tile and the
# other six classes are in none of the photos; on the post's photo, the dog breeds belong to the
# left half and the cat classes to the right.

# %%
known, absent = {}, set()
if IMAGE == "grid":
    known = dict.fromkeys((C.TABBY, C.TIGER_CAT, C.EGYPTIAN_CAT), "cat tile")
    absent = set(POST_CLASSES) - set(known)
elif IMAGE == "cat_and_dog":
    known = dict.fromkeys((C.VIZSLA, C.GERMAN_SHEPHERD, C.GREAT_DANE, C.CHOW), "left half")
    known |= dict.fromkeys((C.TABBY, C.TIGER_CAT, C.EGYPTIAN_CAT), "right half")
region_names = list(regions)
shares = np.array([region_shares(h, list(regions.values())) for h in per_class.heatmaps])
print(f"{'class':17s} {'prob.':>7s}  " + "  ".join(f"{name[:13]:>13s}" for name in region_names) + "  largest share")
for c, p, row in zip(per_class.class_indices, per_class.probabilities, shares, strict=True):
    largest = region_names[int(row.argmax())]
    verdict = "  (its own)" if known.get(c) == largest else ("  (NOT its own)" if c in known else "")
    print(f"{names[c][:17]:17s} {p:7.1%}  " + "  ".join(f"{s:13.2f}" for s in row) + f"  {largest}{verdict}")
inside = [k for k, c in enumerate(per_class.class_indices) if c in known]
outside = [k for k, c in enumerate(per_class.class_indices) if c in absent]
if inside:
    own = [shares[k, region_names.index(known[per_class.class_indices[k]])] for k in inside]
    print(
        f"\nclasses of objects in the picture: {len(inside)}, putting {min(own):.0%} to {max(own):.0%} "
        "of their map on their own region"
    )
if outside:
    k = max(outside, key=lambda k: shares[k].max())
    print(
        f"classes of objects not in the picture: {len(outside)}, each at most "
        f"{max(per_class.probabilities[k] for k in outside):.1%} probable; yet {per_class.class_names[k]!r} "
        f"puts {shares[k].max():.0%} of its map on the {region_names[int(shares[k].argmax())]}"
    )

# %% [markdown]
# So a heatmap answers "if this were class `c`, where would the evidence be?", even for a class that
# is nowhere in the picture; the probability, not the map, says whether the class is there. And a
# class that is present need not be probable when similar classes share the object, as the three
# cat breeds share the cat here.
#
# **Every class, one click.** The nine classes are the post's choice; the network scores 1000.
# Below is each one's map, all from one forward pass: where only pooling and the classifier follow
# the layer, as at EfficientNet's `features`, every class's Grad-CAM map is the classifier's weights
# applied to the activation (`EveryClassCAM`, checked against `GradCAM` class by class). Type a
# class name, or click one in the list sorted by probability and step with the arrow keys; it draws
# the map on the picture with the post's JET colours and blend, dashes the part the network sees,
# and lists the map's share in each region of step 1. The slider sets the heatmap's weight. In
# JupyterLab it is a widget, so the class you pick reaches the kernel as `view.selected`; the
# published page runs the same explorer in the browser, and `gradcam explore photo.jpg --out
# page.html` writes it for any photo.

# %% tags=["nbval-ignore-output"]
from IPython.display import display

from gradcam_tutorial.publishing.explore_widget import explorer_widget

view = explorer_widget(image, model, spec, title=f"{IMAGE}, {spec.name}", regions=regions)
display(view)

# %% [markdown]
# Pick a class above, then run the next cell: it reads your choice. Where nobody has picked one, as
# on the published page, it is the most probable class.

# %%
print(f"the explorer shows class {view.selected}: {view.selected_name}")

# %% [markdown]
# ## What a heatmap does and does not show
#
# * It shows where, **at one layer**, features that raise **one class score** are active. Another
#   layer gives another, equally "correct" map (Part 2 compares two).
# * It is coarse: one value per cell of the layer's grid, stretched over the picture. Smooth
#   boundaries in the overlay come from the bilinear resize, not from the network.
# * It does not show that the model is right, nor that the highlighted pixels *cause* the
#   prediction. The report tests that: it deletes the highlighted pixels and watches the score fall,
#   randomises the weights to check that the map depends on what was learned, and compares with
#   pytorch-grad-cam, captum and torchcam.
# * Outside the network's crop it shows nothing, and says so by staying at zero.
#
# That is the whole path of the post. Part 2 below is for readers who want to know why the package
# does what it does; the report, for how much a heatmap can be trusted.

# %% [markdown]
# # Part 2: going further
#
# ## 11. Where the short class goes wrong
#
# `PostStyleGradCAM` is correct for one call. Used the way notebooks are used, it has six problems.
# Each is shown live here, next to what the package's `GradCAM` does instead. The demonstrations use
# the post's own layer, the last `nn.Conv2d`:

# %%
import inspect
from collections import Counter

from gradcam_tutorial.layers import trace_spatial_outputs

post_layer_name = last_conv2d(model)
post_layer = dict(model.named_modules())[post_layer_name]
post_cam = PostStyleGradCAM(model, post_layer)
post_map, post_class = post_cam.compute_heatmap(x)
print(
    f"{names[post_class]} at {post_layer_name}: a {post_map.shape[0]}x{post_map.shape[1]} map, "
    f"values {post_map.min():.2f} .. {post_map.max():.2f}"
)

# %% [markdown]
# **1. Hooks pile up.** Hooks stay on the layer until someone removes them. Every time a reader
# re-runs the cell that creates the object, one more pair is registered, and every stale hook runs
# on every later forward and backward pass.

# %%
print("hooks on the layer:", len(post_layer._forward_hooks), "forward,", len(post_layer._backward_hooks), "backward")
rerun = [PostStyleGradCAM(model, post_layer) for _ in range(2)]  # what re-running that cell twice does
print(
    "after re-running it twice:",
    len(post_layer._forward_hooks),
    "forward,",
    len(post_layer._backward_hooks),
    "backward",
)
for stale in rerun:
    stale.remove()

# %% [markdown]
# `GradCAM` registers its hook at the start of each call and removes it in a `finally` block, so
# none is left after a call, not even after an error.
#
# **2. Parameter gradients are left on the model.** `backward()` computes the gradient of every
# weight in the network, which Grad-CAM never uses, and stores it in each parameter's `.grad`, where
# it stays and takes as much memory as the model.

# %%
holding = [p for p in model.parameters() if p.grad is not None]
print(
    f"{len(holding)} of {len(list(model.parameters()))} parameter tensors now hold a .grad "
    f"({sum(p.grad.numel() * p.grad.element_size() for p in holding) / 1e6:.1f} MB)"
)

# %% [markdown]
# `GradCAM` asks autograd only for `∂y_c/∂A` (`torch.autograd.grad` with respect to the activation)
# and leaves every `.grad` as it found it.
#
# **3. One forward and one backward pass per class.** The post's nine heatmaps cost nine full
# passes. We count passes through the whole network with two hooks on its first convolution: one on
# the module, which every forward pass runs, and one on its weight, whose gradient only a backward
# pass through the whole network computes.

# %%
stem = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))  # the first convolution
forward_passes, backward_passes = [], []
counters = [
    stem.register_forward_hook(lambda *args: forward_passes.append(1)),
    stem.weight.register_hook(lambda grad: backward_passes.append(1)),
]
for c in POST_CLASSES:
    post_cam.compute_heatmap(x, c)
post_passes = (len(forward_passes), len(backward_passes))
forward_passes.clear()
backward_passes.clear()
post_cam.remove()  # so that its hooks do not run inside GradCAM's call below
with GradCAM(model, post_layer_name) as cam:
    cam.compute(x, [list(POST_CLASSES)])
for handle in counters:
    handle.remove()
print(f"{len(POST_CLASSES)} classes, passes through the whole network (forward, backward):")
print(f"  the post's class: {post_passes}; GradCAM: {(len(forward_passes), len(backward_passes))}")

# %% [markdown]
# `GradCAM` runs the network once with autograd switched off until the layer's hook fires, records
# only the rest of the network (the head), and walks back through that head once per class, never
# through the whole network. `make bench` times both approaches; `docs/measurements.md` has the numbers.
#
# **4. Dividing by the maximum gives NaN on an all-zero map.** When every position's weighted sum is
# negative, the ReLU leaves only zeros and `cam / cam.max()` is `0 / 0`. Here are the classes whose
# map at the post's layer is zero everywhere on this picture (all 1000 classes in one call of
# `GradCAM`), and, for comparison, at the default layer:

# %%
flat_classes = {}
for name in (post_layer_name, spec.target_layer):
    with GradCAM(model, name) as cam:
        every_class = cam.compute(x, [list(range(len(names)))])
    flat_classes[name] = [c for c in range(len(names)) if float(every_class.maps[0, c].max()) == 0.0]
    listed = ", ".join(f"{names[c]} ({c})" for c in flat_classes[name][:4])
    more = " ..." if len(flat_classes[name]) > 4 else ""
    print(f"{len(flat_classes[name])} of {len(names)} classes have an all-zero map at {name}: {listed}{more}")
flat = flat_classes[post_layer_name]
if flat:
    flat_cam = PostStyleGradCAM(model, post_layer)
    flat_map, _ = flat_cam.compute_heatmap(x, flat[0])
    flat_cam.remove()
    with GradCAM(model, post_layer_name) as cam:
        package_flat, _, _ = cam.compute_heatmap(x, flat[0])
    print(
        f"{names[flat[0]]}: the post's map has {int(np.isnan(flat_map).sum())} NaN of {flat_map.size}; "
        f"GradCAM's map is all zeros: {bool((package_flat == 0).all())}"
    )

# %% [markdown]
# A NaN map draws as an empty or garbled overlay, and one NaN in a batch of metrics poisons the
# mean. `GradCAM` scales each map by its own minimum and maximum and returns zeros for a map without
# contrast.
#
# **5. A module that runs twice.** A forward hook fires every time its module runs, and a model may
# use one module object in several places. The trace of one forward pass shows which:

# %%
finish_order = trace_spatial_outputs(model)
runs = Counter(name for name, _ in finish_order)
shared = [name for name, count in runs.items() if count > 1]
shared_layer = [name for name, _ in finish_order if name in shared][-1]  # the last one to run
print(f"{len(shared)} modules run more than once per forward pass, e.g. {', '.join(shared[:3])}")
print(
    f"{shared_layer!r} runs {runs[shared_layer]} times, with outputs",
    ", ".join(str(shape) for name, shape in finish_order if name == shared_layer),
)

# %% [markdown]
# The short class keeps the last forward call's output, but backward runs in reverse, so the last
# gradient its backward hook sees belongs to the *first* call. Activation and gradient then come
# from different places in the network:

# %%
shared_cam = PostStyleGradCAM(model, dict(model.named_modules())[shared_layer])
try:
    shared_cam.compute_heatmap(x, top)
    outcome = "no error, a map that mixes two different calls"
except RuntimeError as error:
    outcome = f"RuntimeError: {str(error).splitlines()[0]}"
shared_cam.remove()
print("the post's class:", outcome)
print("  activation kept:", tuple(shared_cam.activations.shape), " gradient kept:", tuple(shared_cam.gradients.shape))
with GradCAM(model, shared_layer) as cam:
    shared_result = cam.compute(x, top)
print(f"GradCAM: explains the last call, a map of shape {tuple(shared_result.maps.shape[-2:])}")

# %% [markdown]
# In EfficientNet-Lite0 such a module is `_swish` (a ReLU6, despite its name), used on the stem and
# on the head. `GradCAM` explains a module's *last* call, so it works there; the registry's default
# layer, `features`, runs once, so that the short class of step 7 works at the default layer too.
#
# **6. A full backward hook followed by an in-place operation.** A full backward hook wraps the
# module's output in a special autograd node; if the next module changes that output in place, as
# VGG's `ReLU(inplace=True)` does, autograd refuses. The architecture decides this, so random
# weights show it:

# %%
from torchvision.models import vgg11

torch.manual_seed(0)
vgg = vgg11(weights=None).eval()
vgg_layer = last_conv2d(vgg)
print(f"VGG-11: the last nn.Conv2d is {vgg_layer}, followed by {vgg.features[int(vgg_layer.split('.')[1]) + 1]}")
vgg_cam = PostStyleGradCAM(vgg, dict(vgg.named_modules())[vgg_layer])
try:
    vgg_cam.compute_heatmap(x)
    print("the post's class: no error")
except RuntimeError as error:
    print("the post's class: RuntimeError:", str(error).split(". ")[0])
vgg_cam.remove()  # left in place, its backward hook would break GradCAM's call too
with GradCAM(vgg, vgg_layer) as cam:
    vgg_map, _, _ = cam.compute_heatmap(x)
print(f"GradCAM: a {vgg_map.shape[0]}x{vgg_map.shape[1]} map, all finite: {bool(np.isfinite(vgg_map).all())}")

# %% [markdown]
# `GradCAM` uses no backward hook at all: its forward hook hands the rest of the network a *copy*
# of the activation, so an in-place operation downstream changes the copy, never the tensor it
# takes the gradient with respect to. Every hook the demonstrations registered is gone again, and
# so are the gradients they left:

# %%
model.zero_grad(set_to_none=True)
left_hooks = sum(len(m._forward_hooks) + len(m._backward_hooks) for m in model.modules())
print(
    f"hooks left on the model: {left_hooks}; "
    f"parameters holding a .grad: {sum(p.grad is not None for p in model.parameters())}"
)

# %% [markdown]
# ## 12. The package's `GradCAM`, read against the formula
#
# Where the short class is correct (a fresh object, a layer that runs once, a map that is not all
# zero), both give the same map, at the post's layer as at the default one:

# %%
compared = 0
for name in (post_layer_name, spec.target_layer):
    for c in POST_CLASSES:
        if c in flat_classes[name]:
            continue
        fresh = PostStyleGradCAM(model, dict(model.named_modules())[name])
        same_map, _ = fresh.compute_heatmap(x, c)
        fresh.remove()
        with GradCAM(model, name) as cam:
            raw = cam.compute(x, c).maps[0, 0].numpy()
        np.testing.assert_allclose(same_map, raw / raw.max(), atol=1e-5)
        compared += 1
model.zero_grad(set_to_none=True)
print(f"the short class and GradCAM agree within 1e-5 on all {compared} maps compared")

# %% [markdown]
# Nothing the package does is hidden. These three functions compute the maps: `_run` makes the
# forward pass, `_class_maps` walks back once per class and `combine` (`combine_gradcam`) is the
# formula. The rest of `src/gradcam_tutorial/cam.py` checks inputs, turns class arguments into
# indices and scales maps to [0, 1]:

# %%
for method in (GradCAM._run, GradCAM._class_maps, GradCAM.combine):
    print(inspect.getsource(method))

# %% [markdown]
# Reading it against the formula:
#
# * `hook` is the forward hook. It detaches the layer's output `A`, marks it as needing a gradient,
#   switches autograd on for the rest of the network and returns a clone, so the head computes from
#   a copy of `A` that autograd can trace back to `A` itself (problem 6).
# * `skip` is how many earlier calls of the layer to ignore (problem 5): only the last call feeds
#   the head.
# * In `_class_maps`, `torch.autograd.grad(scores[:, k].sum(), activation, ...)` is `∂y_c/∂A` for
#   class `k`, for every image of the batch at once, through the head alone (problems 2 and 3);
#   `retain_graph` keeps the head's graph for the next class.
# * In `combine_gradcam`, `grad.mean(dim=(2, 3))` is `w_k` and `(weights * activation).sum(dim=1)`
#   the weighted sum; `_class_maps` applies the ReLU. Grad-CAM's relatives (section 15) replace
#   only `combine`, each with its entry of the table `COMBINE` (Score-CAM, which has no gradient,
#   replaces `_class_maps`).
# * The inner `finally: handle.remove()` removes the hook whatever happens (problem 1), right after
#   the forward pass, and `restored_modes` puts every module's train/eval flag back.
#
# Normalisation happens afterwards, in `normalize_maps` (problem 4).
#
# ## 13. Each object of the grid, and a class that is not there
#
# The post's classes are mostly animals; the grid holds four other objects. The same table for each
# object's class, for tabby (the grid's cat is tabby-like) and for cowboy hat, which is in none of
# the photos (on another picture: the post's dog, cat and hat classes):

# %%
if tiles:
    class_list = [tile.class_index for tile in tiles] + [C.TABBY, C.COWBOY_HAT]
    own_region = {tile.class_index: name for tile, name in zip(tiles, regions, strict=True)} | {C.TABBY: "cat tile"}
else:
    class_list = [C.VIZSLA, C.REDBONE, C.GREAT_DANE, C.TABBY, C.EGYPTIAN_CAT, C.COWBOY_HAT]
    own_region = {c: region for c, region in known.items() if c in class_list}
    if IMAGE == "cat_and_dog":
        own_region[C.REDBONE] = "left half"
grid_result = explain(image, model, spec, class_list)
grid_shares = [region_shares(h, list(regions.values())) for h in grid_result.heatmaps]
print(
    f"{'class':24s} {'probability':>11s}  "
    + "  ".join(f"{n[:14]:>14s}" for n in region_names)
    + "  own region largest?"
)
for c, p, row in zip(grid_result.class_indices, grid_result.probabilities, grid_shares, strict=True):
    own = own_region.get(c)
    verdict = "" if own is None else ("yes" if region_names[int(row.argmax())] == own else "NO")
    print(f"{names[c][:24]:24s} {p:11.1%}  " + "  ".join(f"{s:14.2f}" for s in row) + f"  {verdict}")
present = [k for k, c in enumerate(grid_result.class_indices) if c in own_region]
if present:
    k = min(present, key=lambda k: grid_result.probabilities[k])
    c = grid_result.class_indices[k]
    ranked = "in the top 5" if c in indices.tolist() else "not in the top 5"
    print(
        f"\n{names[c]!r} is in the picture at only {grid_result.probabilities[k]:.1%} ({ranked}), "
        f"yet its map puts {grid_shares[k][region_names.index(own_region[c])]:.0%} of its mass on its own region"
    )

# %% [markdown]
# A single-label classifier shares one unit of probability among everything it sees, so an object
# that is in the picture can fall out of the top 5, and its map can still find it.
#
# ## 14. The original post's layer, side by side
#
# The two layer choices of step 6. The last modules of one traced forward pass, in the order they
# finish, show what lies between them:

# %%
for name, shape in trace_spatial_outputs(model)[-7:]:
    print(f"  {name:14s} {shape}")

# %% [markdown]
# In EfficientNet-Lite0 the last convolution (`_conv_head`) is followed by batch normalisation and
# ReLU6, so its raw output keeps negative responses that the classifier never sees. For the post's
# ResNet-18 the two rules give `layer4.1.conv2` and `layer4`; the architecture alone decides that,
# so it can be checked without downloading any weights:

# %%
from torchvision.models import resnet18

untrained_resnet = resnet18(weights=None).eval()
print("ResNet-18, last nn.Conv2d:", last_conv2d(untrained_resnet))
print("ResNet-18, last spatial output:", last_spatial_layer(untrained_resnet))

# %% [markdown]
# The two layers side by side, for the first class of section 13 (figure) and all of them (table):

# %% caption="The first class at the post's layer (last nn.Conv2d) and at the default layer; dashed: as above."
layers = [spec.last_conv_layer, spec.target_layer]
by_layer = [explain(image, model, spec, class_list, layer=name) for name in layers]
fig, axes = plt.subplots(1, 2, figsize=(9, 4))
for ax, name, result in zip(axes, layers, by_layer, strict=True):
    show_overlay(ax, image, result.heatmaps[0], f"{names[class_list[0]]} at {name}", colormap="viridis", box=result.box)
plt.show()
layer_shares = [[region_shares(h, list(regions.values())) for h in result.heatmaps] for result in by_layer]
layer_peaks = [[np.unravel_index(m.argmax(), m.shape) for m in result.small_heatmaps] for result in by_layer]
print(f"{'class':24s} {'layer':12s} {'peak cell':>9s}  " + "  ".join(f"{n[:14]:>14s}" for n in region_names))
for k, c in enumerate(class_list):
    for name, row, peaks in zip(layers, layer_shares, layer_peaks, strict=True):
        peak = "({}, {})".format(*(int(v) for v in peaks[k]))
        print(f"{names[c][:24]:24s} {name:12s} {peak:>9s}  " + "  ".join(f"{s:14.2f}" for s in row[k]))
first, second = (np.array(row) for row in layer_shares)
same_region = int((first.argmax(axis=1) == second.argmax(axis=1)).sum())
print(f"\nthe region with the largest share is the same at both layers for {same_region} of {len(class_list)} classes;")
print(f"a share differs between the layers by {np.abs(first - second).max():.2f} at most")

# %% [markdown]
# So the layer choice moves mass between regions; the two lines above say how much on this
# picture, and whether it changes which region wins. Which layer's maps are more *faithful* to the
# network cannot be read off one picture; the report measures it on many photos.
#
# ## 15. Grad-CAM's relatives
#
# Libraries offer a dozen variants of Grad-CAM. The package has five, each on the same one-pass
# machinery (`CAM_METHODS`; they differ only in how they turn the activation `A` and the gradient
# `G = ∂y_c/∂A` into a map):
#
# * **Grad-CAM++** weights each position by how much it adds to the channel's score (a closed form
#   in `G²` and `G³`), meant to credit several instances of a class instead of the largest one;
# * **HiResCAM** multiplies `G` and `A` position by position instead of averaging `G` first;
# * **XGrad-CAM** weights each channel by `Σ G·A / Σ A`;
# * **LayerCAM** keeps only the positive part of `G`, position by position;
# * **Score-CAM** uses no gradient: it masks the picture with each channel in turn (one forward
#   pass per channel; the channels that are constant over the map, often all zero, mask out
#   everything and share one pass) and weights the channel by the class score of what it lets
#   through.
#
# `compute_methods` gives all of them for the same classes from one forward pass (Score-CAM adds its
# masked passes), here for the first four classes of section 13 at the default layer:

# %%
from gradcam_tutorial import CAM_METHODS, compute_methods
from gradcam_tutorial.viz import heatmap_on_photo

compared_classes = class_list[:4]
by_method = compute_methods(model, spec.target_layer, x, [compared_classes])
placed = {
    name: [heatmap_on_photo(m, image.size, grid_result.pixel_box) for m in result.normalized()[0].numpy()]
    for name, result in by_method.items()
}
print(f"{len(CAM_METHODS)} methods x {len(compared_classes)} classes:", ", ".join(names[c] for c in compared_classes))

# %% caption="Each method's map (rows) of the same four classes (columns), each scaled on its own."
fig = overlay_grid(
    image,
    [heatmap for name in by_method for heatmap in placed[name]],
    [f"{name}\n{names[c][:20]}" for name in by_method for c in compared_classes],
    columns=len(compared_classes),
    colormap="viridis",
    box=grid_result.box,
    label="each method's map (normalised)",
    panel=2.6,
)
plt.show()

# %% [markdown]
# The region that holds the largest share of each map, as in section 13, and whether the method's
# map is Grad-CAM's (equal within 1e-6 after scaling, for all four classes):

# %%
print(f"{'method':11s} {'same as Grad-CAM':>16s}  " + "  ".join(f"{names[c][:14]:>14s}" for c in compared_classes))
gradcam_maps = by_method["gradcam"].normalized()
for name, result in by_method.items():
    same = bool((result.normalized() - gradcam_maps).abs().max() <= 1e-6)
    largest = [region_names[int(region_shares(h, list(regions.values())).argmax())] for h in placed[name]]
    print(f"{name:11s} {'yes' if same else 'no':>16s}  " + "  ".join(f"{r[:14]:>14s}" for r in largest))

# %% [markdown]
# Two of the five give exactly Grad-CAM's maps here, and that is not a coincidence: after the
# default layer EfficientNet-Lite0 only averages over the 7 x 7 positions and applies a linear
# classifier, so `G` is the same at every position. Averaging it first (Grad-CAM) or not
# (HiResCAM) then changes nothing, and XGrad-CAM's `Σ G·A / Σ A` is that same constant. The
# differences HiResCAM argues about appear at layers inside the network.
#
# Grad-CAM++ and LayerCAM do differ here: both keep only the positive part of the gradient, so
# channels that speak *against* the class no longer subtract from the map, and their maps spread
# over more of the picture (for the military uniform the largest share even moves to the cat tile).
# Score-CAM, built without gradients, puts every class on its own tile, as Grad-CAM does. Which
# variant tells the truth more often is not something one picture can show: the report runs every
# one through the same localisation, deletion, insertion, ROAD and randomisation measures,
# paired with Grad-CAM on the same photos.

# %% [markdown]
# ## 16. Scores other than a class, and transformers
#
# `targets` need not be class indices. Any function of the model's output that gives one number per
# image will do (`gradcam_tutorial.targets`), and a list of them is explained from one forward
# pass. One ready target is the cosine similarity of an embedding to a reference embedding. Here the
# embedding is what the classifier reads (the classifier swapped for `nn.Identity`). The reference
# is the embedding of the first region alone. The map answers "what in the whole picture makes it
# look like that region?":

# %%
import copy

from torch import nn

from gradcam_tutorial.targets import MultiLabel, Similarity

embedder = copy.deepcopy(model)
setattr(embedder, spec.classifier, nn.Identity())  # the output is now the pooled features
first_region = region_names[0]
with torch.no_grad():
    reference = embedder(spec.preprocess(image.crop(regions[first_region])))[0]
with GradCAM(embedder, spec.target_layer) as embedding_cam:
    similar = embedding_cam.compute(x, Similarity(reference))
similar_map = heatmap_on_photo(similar.normalized()[0, 0].numpy(), image.size, spec.pixel_box(image.size))
largest = region_names[int(region_shares(similar_map, list(regions.values())).argmax())]
print(f"reference: {first_region}; largest share of the similarity map: {largest}")

# %% caption="What makes the whole picture look like its first region, by Grad-CAM of a cosine similarity."
fig, ax = plt.subplots(figsize=(4.5, 4.5))
show_overlay(ax, image, similar_map, title=f"similarity to the {first_region}")
plt.show()

# %% [markdown]
# A multi-label model gives each label its own sigmoid, and `MultiLabel(c)` explains that
# probability. On one image it draws the same map as the class's logit: the sigmoid's slope at the
# logit is one positive number, which scales every gradient alike, and the normalised map cannot
# see a common scale. What changes is the score. Checked on this picture's top class:

# %%
with GradCAM(model, spec.target_layer) as cam:
    by_logit = cam.compute(x, top).normalized()
    by_sigmoid = cam.compute(x, MultiLabel(top)).normalized()
print("same normalised map:", bool((by_logit - by_sigmoid).abs().max() <= 1e-5))

# %% [markdown]
# A segmentation model scores every pixel, so "why is this pixel a cat?" becomes a target too:
# `SegmentationMask(c, mask)` sums class `c`'s scores over the pixels of `mask`. The model gives a
# dictionary (`{"out": ...}`), which the target reads. torchvision's segmentation weights do not
# install offline either, so this one is random too, and only the mechanics are shown:

# %%
from torchvision.models.segmentation import lraspp_mobilenet_v3_large

from gradcam_tutorial.targets import SegmentationMask

torch.manual_seed(0)
segmenter = lraspp_mobilenet_v3_large(weights=None, weights_backbone=None).eval()
mask = torch.zeros(x.shape[-2:])
mask[: x.shape[-2] // 2, : x.shape[-1] // 2] = 1.0  # the top-left quarter of the network's input
with GradCAM(segmenter, "backbone.16") as segment_cam:
    why = segment_cam.compute(x, [SegmentationMask(8, mask), SegmentationMask(15, mask)])  # cat, person
print(f"two targets, one forward pass: maps {tuple(why.maps.shape)}, scores {tuple(why.logits.shape)}")

# %% [markdown]
# A vision transformer's blocks give tokens, not a grid: a class token, then one token per
# 16 x 16 patch. `GradCAM` lays torchvision's ViT and Swin tokens out as a grid by itself (pass
# `reshape=` for any other layout). Which layer matters more than with a CNN: the head reads only
# the class token, so at the last block's output the patch tokens get no gradient and every map is
# zero. One attention step earlier, the last block's `ln_1` (`default_token_layer`), every patch
# still feeds the class token. No trained transformer installs offline, so these weights are
# random: the cell shows the mechanics, not what a trained ViT sees.

# %%
import torchvision

from gradcam_tutorial.tokens import default_token_layer

torch.manual_seed(0)
vit = torchvision.models.vit_b_16(weights=None).eval()
nn.init.normal_(vit.heads.head.weight, std=0.02)  # torchvision starts the head at zero: no gradient at all
vit_x = get_spec("vit_b_16").preprocess(image)
for layer in (default_token_layer(vit), "encoder.ln"):
    with GradCAM(vit, layer) as vit_cam:
        maps = vit_cam.compute(vit_x, 0).maps
    print(f"{layer:38s} map {tuple(maps.shape[-2:])}, all zero: {bool(maps.max() == 0)}")

# %% [markdown]
# ## Checking the numbers above
#
# This notebook is also a regression test: `make test` re-runs it with nbval, which compares every
# printed output with the committed one. Floats from a convolution differ in their last bits from
# one CPU to another, so each number above that the network computed is also compared here with a
# stored reference, `tests/reference/tutorial.json`, that gives every value the tolerance it is
# allowed (ten times the spread measured across CPU kernels and thread counts). The printed digits
# are chosen so that no value within its tolerance prints differently. A copy of this notebook
# outside the repository has no reference file and says that its numbers are not checked.

# %%
from gradcam_tutorial.publishing.reference import check, find_reference

numbers = {
    "top5_indices": indices,
    "top5_probabilities": values,
    "heatmap": heatmap,
    "post_class_probabilities": per_class.probabilities,
    "post_class_small_heatmaps": per_class.small_heatmaps,
    "post_class_shares": shares,
    "post_map_range": [post_map.min(), post_map.max()],
    "flat_classes_post_layer": flat_classes[post_layer_name],
    "flat_classes_default_layer": flat_classes[spec.target_layer],
    "grid_probabilities": grid_result.probabilities,
    "grid_shares": grid_shares,
    "layer_shares": layer_shares,
    "layer_peaks": layer_peaks,
    "layer_largest_share_difference": np.abs(first - second).max(),
}
printed = {  # decimals, as printed (a percentage with 2 decimals is 4 decimals of the value)
    "top5_probabilities": 4,
    "heatmap": 2,
    "post_class_probabilities": 3,
    "post_class_shares": 2,
    "post_map_range": 2,
    "grid_probabilities": 3,
    "grid_shares": 2,
    "layer_shares": 2,
    "layer_largest_share_difference": 2,
}
print(
    check(
        "tutorial", numbers, find_reference("tutorial"), {"MODEL": MODEL, "IMAGE": IMAGE}, printed, nonnegative=printed
    )
)
