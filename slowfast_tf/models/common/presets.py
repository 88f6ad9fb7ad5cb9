"""Preset lookup and model building shared by every model family (one implementation, two families)."""

from slowfast_tf.clip_spec import ClipSpec, get_clip_spec

# Keyword arguments that configure the classifier head rather than the backbone.
CLASSIFIER_KWARGS = ("dropout", "head_pool_size", "train_crop_size", "activation", "clip_spec")


class PresetFamily:
    """``list_presets`` / ``get_preset`` / ``build_backbone`` / ``build_model`` over one preset dict.

    Args:
        presets: mapping ``{name: preset}``; each preset has ``backbone`` (kwargs dict),
            ``train_crop_size`` and ``clip_spec`` (a name in ``slowfast_tf.clip_spec.CLIP_SPECS``).
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
                (``dropout``, ``head_pool_size``, ``train_crop_size``, ``activation``,
                ``clip_spec``: default the preset's named spec, see `clip_spec_for`).

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
        if head_kwargs.get("clip_spec") is None:
            head_kwargs["clip_spec"] = clip_spec_for(preset, backbone)
        return self.classifier_cls(backbone, num_classes=num_classes, name=preset_name, **head_kwargs)


def check_clip_spec(clip_spec, backbone):
    """Validates a model's ``clip_spec`` argument and returns it as a plain JSON dict (or None).

    The dict is stored in ``get_config`` as is, so ``keras.saving.load_model`` restores it; its
    frames per pathway must be the backbone's.
    """
    if clip_spec is None:
        return None
    spec = clip_spec if isinstance(clip_spec, ClipSpec) else ClipSpec.from_dict(dict(clip_spec))
    spec = spec.clip_spec
    frames = dict(backbone.input_frames)
    if spec.frames_per_pathway() != frames:
        raise ValueError(
            "`clip_spec` must give the backbone's frames per pathway. "
            f"Received: clip_spec frames={spec.frames_per_pathway()}, backbone frames={frames}"
        )
    return spec.to_dict()


def clip_spec_for(preset, backbone):
    """The preset's named clip spec, with frames/alpha/pathways following the built backbone
    (e.g. ``num_frames=8`` overridden for a tiny model), and every crop and short side equal to
    the backbone's fixed ``image_size`` when it has one."""
    spec = get_clip_spec(preset.clip_spec)
    size = getattr(backbone, "image_size", None)
    if size:
        spec = spec.replace(train_crop=size, test_crop=size, test_short_side=size,
                            train_jitter_scales=(size, size))
    frames = dict(backbone.input_frames)
    if spec.frames_per_pathway() == frames:
        return spec
    pathways = tuple(p for p in ("slow", "fast") if p in frames)
    if len(pathways) == 2:
        return spec.replace(pathways=pathways, num_frames=frames["fast"],
                            alpha=frames["fast"] // max(frames["slow"], 1))
    return spec.replace(pathways=pathways, num_frames=frames[pathways[0]])
