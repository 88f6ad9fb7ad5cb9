import json
import os

import pytest

from slowfast_tf import clip_spec
from slowfast_tf.clip_spec import CLIP_SPECS, ClipSpec, get_clip_spec


def test_defaults_are_pyslowfast_kinetics_slowfast_8x8():
    spec = ClipSpec()
    assert (spec.num_frames, spec.sampling_rate, spec.target_fps, spec.alpha) == (32, 2, 30.0, 4)
    assert (spec.train_crop, spec.test_crop, spec.train_jitter_scales) == (224, 256, (256, 320))
    assert spec.frames_per_pathway() == {"slow": 8, "fast": 32}
    assert spec.short_side == 256  # None follows train_jitter_scales[0] (kinetics.py)
    assert get_clip_spec("slowfast_8x8") == spec


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"num_frames": 30}, "multiple of alpha"),
        ({"pathways": ("fast", "slow")}, "pathways must be one of"),
        ({"sampling_rate": 0}, "sampling_rate must be an int >= 1"),
        ({"num_frames": 8.0}, "num_frames must be an int"),
        ({"target_fps": 0}, "target_fps must be > 0"),
        ({"train_jitter_scales": (320, 256)}, "0 < min <= max"),
        ({"train_jitter_scales": (200, 256)}, "at least train_crop"),
        ({"test_short_side": 128}, "test_short_side must be an int >= test_crop"),
        ({"std": (0.2, 0.0, 0.2)}, "std > 0"),
        ({"mean": (0.4, 0.4)}, "need 3 values"),
    ],
)
def test_validation_errors_name_the_field(changes, message):
    with pytest.raises(ValueError, match=message):
        ClipSpec().replace(**changes)


def test_single_pathway_ignores_alpha():
    spec = ClipSpec(num_frames=7, alpha=4, pathways=("slow",), train_crop=56, test_crop=64,
                    train_jitter_scales=(64, 72))
    assert spec.frames_per_pathway() == {"slow": 7}


def test_dict_json_and_file_round_trip(tmp_path):
    spec = get_clip_spec("r2plus1d_torchvision_16x1", num_frames=8)
    values = spec.to_dict()
    assert json.loads(json.dumps(values)) == values
    assert values["pathways"] == ["slow"] and values["test_short_side"] == 128
    assert ClipSpec.from_dict(values) == spec
    assert ClipSpec.from_json(spec.to_json()) == spec
    path = spec.save(str(tmp_path / "x.clip_spec.json"))
    assert ClipSpec.load(path) == spec
    assert sorted(os.listdir(tmp_path)) == ["x.clip_spec.json"]  # atomic: no temp file left


def test_from_dict_and_load_reject_bad_input(tmp_path):
    with pytest.raises(ValueError, match=r"Unknown clip spec fields \['crop'\]"):
        ClipSpec.from_dict({"crop": 3})
    bad = tmp_path / "bad.clip_spec.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="Bad clip spec file"):
        ClipSpec.load(str(bad))
    bad.write_text('{"num_frames": 30}')
    with pytest.raises(ValueError, match="multiple of alpha"):
        ClipSpec.load(str(bad))


def test_override_ignores_none():
    spec = ClipSpec()
    assert spec.override(num_frames=None, test_crop=None) is spec
    assert spec.override(num_frames=16, test_crop=None).num_frames == 16


def test_sidecar_path_and_load(tmp_path):
    assert clip_spec.sidecar_path("/a/b/model.weights.h5") == "/a/b/model.clip_spec.json"
    assert clip_spec.sidecar_path("m.h5") == "m.h5.clip_spec.json"
    weights = str(tmp_path / "m.weights.h5")
    assert clip_spec.load_sidecar(weights) is None
    ClipSpec(num_frames=16).save(clip_spec.sidecar_path(weights))
    assert clip_spec.load_sidecar(weights) == ClipSpec(num_frames=16)


def test_named_specs_and_unknown_name():
    assert CLIP_SPECS["slowfast_4x16"].frames_per_pathway() == {"slow": 4, "fast": 32}
    assert CLIP_SPECS["slowfast_16x8"].frames_per_pathway() == {"slow": 16, "fast": 64}
    assert CLIP_SPECS["r2plus1d_16x1"].short_side == 128
    assert CLIP_SPECS["ava_slowfast_32x2_c2"].short_side == 256
    with pytest.raises(ValueError, match="Unknown clip spec"):
        get_clip_spec("slowfast_r50_8x8")
    with pytest.raises(TypeError):
        CLIP_SPECS["x"] = ClipSpec()  # read-only


def test_from_model_reads_the_dict_attribute():
    class Model:
        clip_spec = ClipSpec(num_frames=16).to_dict()

    assert clip_spec.from_model(Model()) == ClipSpec(num_frames=16)
    assert clip_spec.from_model(object()) is None
