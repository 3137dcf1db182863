"""The backbone libraries (features.backbone_registry): importing this package registers them all."""

from tbdencoder.features.libraries import open_clip_tower, timm_vit, torchvision_cnn  # noqa: F401
