"""Preset lookup and model building shared by every model family (one implementation, two families)."""

# Keyword arguments that configure the classifier head rather than the backbone.
CLASSIFIER_KWARGS = ("dropout", "head_pool_size", "train_crop_size", "activation")


class PresetFamily:
    """``list_presets`` / ``get_preset`` / ``build_backbone`` / ``build_model`` over one preset dict.

    Args:
        presets: mapping ``{name: preset}``; each preset has ``backbone`` (kwargs dict) and
            ``train_crop_size``.
        backbone_cls: the family's backbone class.
        classifier_cls: the video classifier class wrapping the backbone.
        head_defaults: dict of classifier kwargs applied unless overridden (e.g. dropout).
    """

    def __init__(self, presets, backbone_cls, classifier_cls, head_defaults=None):
        self.presets = presets
        self.backbone_cls = backbone_cls
        self.classifier_cls = classifier_cls
        self.head_defaults = dict(head_defaults or {})

    def list_presets(self):
        """Returns the sorted preset names."""
        return sorted(self.presets)

    def get_preset(self, name):
        """Returns the preset called ``name`` (``ValueError`` listing valid names)."""
        if name not in self.presets:
            raise ValueError(
                f"Unknown preset. Valid presets: {self.list_presets()}. Received: name={name!r}"
            )
        return self.presets[name]

    def build_backbone(self, preset_name, **overrides):
        """Builds the backbone of a preset; ``overrides`` replace backbone kwargs."""
        preset = self.get_preset(preset_name)
        return self.backbone_cls(**{**preset.backbone, **overrides})

    def build_model(self, preset_name, num_classes=400, **overrides):
        """Builds the video classifier of a preset.

        Args:
            preset_name: str, one of ``list_presets()``.
            num_classes: int, classes of the projection (400 = Kinetics-400).
            **overrides: any backbone kwarg (e.g. ``depth=18, width=8`` for a tiny model,
                ``norm="sync_batch_norm"``, ``image_size=224``) or classifier kwarg
                (``dropout``, ``head_pool_size``, ``train_crop_size``, ``activation``).

        Returns:
            The classifier; its output is logits ``[B, num_classes]``.
        """
        preset = self.get_preset(preset_name)
        head_kwargs = {k: overrides.pop(k) for k in CLASSIFIER_KWARGS if k in overrides}
        head_kwargs = {**self.head_defaults, **head_kwargs}
        # A model built for a fixed small image size (tiny tests) trains at that size.
        head_kwargs.setdefault(
            "train_crop_size", overrides.get("image_size") or preset.train_crop_size
        )
        backbone = self.backbone_cls(**{**preset.backbone, **overrides})
        return self.classifier_cls(backbone, num_classes=num_classes, name=preset_name, **head_kwargs)
