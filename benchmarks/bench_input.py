"""Input throughput: tf.data over TFRecords vs PySlowFast-style per-clip PyAV decoding.

    python benchmarks/bench_input.py                       # synthetic 64x64 set, ~1-2 min on 2 cores
    python benchmarks/bench_input.py --size 256 --preset slowfast_8x8 --clips 64

Both sides produce the same training clips (random window, short-side jitter, random crop, flip,
normalise, PackPathway) for ``--preset``:

* ``tf.data``: ``build_dataset(..., "train")`` on shards written by ``tfrecords_tools``; only the
  sampled JPEGs are decoded. Reported with AUTOTUNE parallelism and pinned to one thread.
* ``PyAV``: what PySlowFast's ``pyav`` backend does per clip: open the MP4, seek to the window
  start, decode up to its end, pick the linspace frames, resize (`slowfast_tf.video_io`'s rule:
  swscale AREA), crop, flip, normalise in numpy. One process, like one DataLoader worker.

Prints clips/s for each and the ratio. The data set (and its TFRecords) are generated under
``--work_dir`` when missing.
"""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402

from slowfast_tf import video_io  # noqa: E402
from slowfast_tf.data import DataConfig, build_dataset, get_data_config, synthetic  # noqa: E402
from slowfast_tf.data.transforms import slow_indices  # noqa: E402
from slowfast_tf.training import devices  # noqa: E402
from slowfast_tf.utils import cli_flags  # noqa: E402


def prepare(work: str, size: int, seconds: float, per_class: int) -> tuple[str, str]:
    """Synthetic MP4s + their TFRecords under `work` (reused when present)."""
    from tfrecords_tools import cli

    data = os.path.join(work, f"synthetic_{size}")
    records = os.path.join(work, f"records_{size}")
    if not os.path.exists(os.path.join(data, "train.csv")):
        synthetic.generate(data, {"train": per_class}, size=size, seconds=seconds, seed=0)
    if not os.path.exists(os.path.join(records, "manifest.json")):
        cli.main(["convert", "--input", os.path.join(data, "train.csv"), "--path_prefix", data,
                  "--split", "train", "--output_dir", records, "--classes",
                  os.path.join(data, "classes.txt"), "--short_side", "0",
                  # In-process: spawned workers would re-import this script and TensorFlow.
                  "--workers", "0"])
    return data, records


def bench_tfdata(records: str, config: DataConfig, clips: int, batch_size: int,
                 threads: int | None) -> float:
    import tensorflow as tf

    ds = build_dataset(os.path.join(records, "train-*.tfrecord"), config, "train", batch_size)
    if threads:
        options = tf.data.Options()
        options.threading.private_threadpool_size = threads
        ds = ds.with_options(options)
    iterator = iter(ds)
    for _ in range(2):  # warm-up: tracing, file opening, buffer fill
        next(iterator)
    batches = max(1, clips // batch_size)
    start = time.perf_counter()
    for _ in range(batches):
        batch = next(iterator)
    _ = batch[0][config.pathways[0]].numpy()
    return batches * batch_size / (time.perf_counter() - start)


def pyav_clip(path: str, config: DataConfig, rng: np.random.Generator) -> dict:
    """One training clip the PySlowFast pyav way (decoder.pyav_decode + temporal_sampling), with
    the project's decoder and resize rule (`slowfast_tf.video_io`)."""
    info = video_io.probe(path)
    fps = info.fps
    clip_size = config.sampling_rate * config.num_frames / config.target_fps * fps
    delta = max(info.num_frames - clip_size, 0)
    start = rng.uniform(0, delta)
    end = start + clip_size - 1
    # Seek to the keyframe before the window (PySlowFast seeks to start_pts - 1024), decode
    # until the window's last frame; only the sampled frames are resized below.
    frames = []
    for item in video_io.iter_frames(path, start_seconds=int(start) / fps,
                                     limits=video_io.NO_LIMITS):
        frames.append(item)
        if item.index >= end:
            break
    index = np.linspace(start, end, config.num_frames)
    index = np.clip(index - frames[0].index, 0, len(frames) - 1).astype(int)
    lo, hi = config.train_jitter_scales
    size = int(round(rng.uniform(lo, hi)))
    clip = np.stack([
        video_io.resize(frames[i].frame, size).to_ndarray(format="rgb24") for i in index
    ])
    new_h, new_w = clip.shape[1:3]
    crop = config.train_crop
    y = rng.integers(0, max(new_h - crop, 1))
    x = rng.integers(0, max(new_w - crop, 1))
    clip = clip[:, y : y + crop, x : x + crop]
    if config.random_flip and rng.random() < 0.5:
        clip = clip[:, :, ::-1]
    clip = (clip.astype(np.float32) / 255.0 - np.float32(config.mean)) / np.float32(config.std)
    if config.pathways == ("slow", "fast"):
        return {"slow": clip[slow_indices(config.num_frames, config.alpha)], "fast": clip}
    return {config.pathways[0]: clip}


def bench_pyav(data: str, config: DataConfig, clips: int) -> float:
    lines = [line.split()[0] for line in open(os.path.join(data, "train.csv")) if line.strip()]
    rng = np.random.default_rng(0)
    paths = [os.path.join(data, lines[i]) for i in rng.integers(0, len(lines), clips + 2)]
    for path in paths[:2]:
        pyav_clip(path, config, rng)
    start = time.perf_counter()
    for path in paths[2:]:
        pyav_clip(path, config, rng)
    return clips / (time.perf_counter() - start)


def define_flags(fv: flags.FlagValues) -> None:
    f = {"flag_values": fv}
    flags.DEFINE_string("work_dir", "/tmp/slowfast_tf_bench_input", "Data set and records.", **f)
    flags.DEFINE_string("preset", "synthetic_slowfast", "Data preset.", **f)
    flags.DEFINE_integer("size", 64, "Synthetic frame side.", **f)
    flags.DEFINE_float("seconds", 2.0, "Synthetic video length.", **f)
    flags.DEFINE_integer("per_class", 8, "Videos per class.", **f)
    flags.DEFINE_integer("clips", 96, "Clips timed per method.", **f)
    flags.DEFINE_integer("batch_size", 8, "tf.data batch size.", **f)


def main(argv=None) -> dict:
    args, _ = cli_flags.parse(
        argv, define_flags, "python benchmarks/bench_input.py", {"--work": "--work_dir"},
        __doc__.split("\n\n")[0],
    )

    config = get_data_config(args.preset)
    if min(config.train_jitter_scales) > args.size:
        raise ValueError(f"--size {args.size} is below the preset's jitter scales "
                         f"{config.train_jitter_scales}; pick a larger --size.")
    devices.log_run_context("bench_input.py", to_stdout=True, per_replica_batch_size=args.batch_size)
    data, records = prepare(args.work_dir, args.size, args.seconds, args.per_class)
    results = {
        "preset": args.preset, "size": args.size, "clips": args.clips,
        "tfdata_autotune_clips_per_s": bench_tfdata(records, config, args.clips, args.batch_size, None),
        "tfdata_1thread_clips_per_s": bench_tfdata(records, config, args.clips, args.batch_size, 1),
        "pyav_clips_per_s": bench_pyav(data, config, args.clips),
        "cpu_count": os.cpu_count(),
    }
    results["ratio_autotune_vs_pyav"] = results["tfdata_autotune_clips_per_s"] / results["pyav_clips_per_s"]
    results["ratio_1thread_vs_pyav"] = results["tfdata_1thread_clips_per_s"] / results["pyav_clips_per_s"]
    print(f"tf.data (AUTOTUNE): {results['tfdata_autotune_clips_per_s']:8.1f} clips/s")
    print(f"tf.data (1 thread): {results['tfdata_1thread_clips_per_s']:8.1f} clips/s")
    print(f"PyAV per clip     : {results['pyav_clips_per_s']:8.1f} clips/s")
    print(f"ratio tf.data/PyAV: {results['ratio_autotune_vs_pyav']:.2f}x (AUTOTUNE), "
          f"{results['ratio_1thread_vs_pyav']:.2f}x (1 thread)")
    print(json.dumps(results))
    return results


if __name__ == "__main__":
    sys.exit(cli_flags.run(main))
