"""Helpers for the Grad-CAM tutorial and report: one implementation that the notebooks import."""

from .cam import CAMResult, Combine, GradCAM, ModelError, TargetError, combine_gradcam, normalize_maps
from .classes import ClassNameError, imagenet_categories, resolve_class
from .data import DownloadError, Remote, fetch
from .every_class import EveryClassCAM
from .explain import Explanation, explain
from .images import ImageError, demo_grid, load_image
from .layers import LayerError, last_conv2d, last_spatial_layer, resolve_layer
from .methods import (
    CAM_METHODS,
    COMBINE,
    GradCAMPlusPlus,
    HiResCAM,
    LayerCAM,
    ScoreCAM,
    XGradCAM,
    combine_gradcam_plus_plus,
    combine_hirescam,
    combine_layercam,
    combine_xgradcam,
    compute_methods,
)
from .models import REGISTRY, ModelSpec, WeightsUnavailableError, create_model, get_spec
from .viz import colorize, overlay, overlay_grid, show_overlay

__all__ = [
    "CAM_METHODS",
    "COMBINE",
    "REGISTRY",
    "CAMResult",
    "ClassNameError",
    "Combine",
    "DownloadError",
    "EveryClassCAM",
    "Explanation",
    "GradCAM",
    "GradCAMPlusPlus",
    "HiResCAM",
    "ImageError",
    "LayerCAM",
    "LayerError",
    "ModelError",
    "ModelSpec",
    "Remote",
    "ScoreCAM",
    "TargetError",
    "WeightsUnavailableError",
    "XGradCAM",
    "colorize",
    "combine_gradcam",
    "combine_gradcam_plus_plus",
    "combine_hirescam",
    "combine_layercam",
    "combine_xgradcam",
    "compute_methods",
    "create_model",
    "demo_grid",
    "explain",
    "fetch",
    "get_spec",
    "imagenet_categories",
    "last_conv2d",
    "last_spatial_layer",
    "load_image",
    "normalize_maps",
    "overlay",
    "overlay_grid",
    "resolve_class",
    "resolve_layer",
    "show_overlay",
]
