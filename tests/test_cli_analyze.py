"""``analyze`` subcommand, registered into a parser of the test's own (the real CLI's
``build_parser`` imports ``register`` from the same module)."""
from __future__ import annotations

import argparse
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from fademem_core.cli.analyze import register
from fademem_core.cli.common import CliError
from fademem_core.analysis.spectral_synthetic import synthetic_video


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="fademem")
    sub = parser.add_subparsers(dest="command")
    register(sub)
    return parser.parse_args(["analyze", *argv])


def run(*argv: str) -> int:
    args = parse(*argv)
    return args.func(args)


@pytest.fixture(scope="module")
def latent_file(tmp_path_factory):
    """A synthetic 'latent' [C=1, T, h, w] whose bands follow r ~ t^-0.7."""
    bands = 8
    radius = (np.arange(bands) + 0.5) / bands
    taus = [5.0 / math.log(10) * (radius[r] / radius[3]) ** (-1 / 0.7) for r in range(bands)]
    x = torch.from_numpy(synthetic_video(160, 64, taus, seed=0))  # [T, 1, h, w]
    path = tmp_path_factory.mktemp("lat") / "clip.safetensors"
    save_file({"latent_tensor": x.permute(1, 0, 2, 3).contiguous()}, str(path))
    return path


def test_defaults_and_options_parse():
    a = parse("clip.mp4")
    assert (a.bands, a.max_lag, a.epsilon, a.fit_bands, a.rgb) == (16, None, 0.1, None, False)
    a = parse("x.latent", "--bands", "8", "--max-lag", "30", "--fit-bands", "2:6",
              "--size", "320x136", "--max-frames", "100", "--rgb")
    assert (a.bands, a.max_lag, a.fit_bands, a.size, a.max_frames, a.rgb) == \
        (8, 30, (2, 6), "320x136", 100, True)
    assert callable(a.func)


@pytest.mark.parametrize("argv", [["x", "--bands", "1"], ["x", "--max-lag", "2"],
                                  ["x", "--fit-bands", "3"], ["x", "--epsilon", "0.9"]])
def test_bad_options_are_usage_errors(argv, capsys):
    with pytest.raises(SystemExit) as e:
        parse(*argv)
    assert e.value.code == 2


def test_latent_file_writes_plot_and_json(latent_file, tmp_path, capsys):
    png, js = tmp_path / "fig.png", tmp_path / "out.json"
    assert run(str(latent_file), "--bands", "8", "--max-lag", "40", "--plot", str(png),
               "--json", str(js)) == 0
    out = capsys.readouterr().out
    assert "suggested beta" in out and "(latent)" in out
    data = json.loads(js.read_text())
    assert data["kind"] == "latent" and data["max_lag"] == 40
    assert abs(data["b"] - 0.7) < 0.1
    assert data["suggested_beta"] == pytest.approx(max(0.05, 1 - data["b"]))
    with Image.open(png) as img:
        assert img.size == (1200, 520)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fig.png", "out.json"]  # no temp left


def test_video_file(tmp_path, capsys):
    from test_video_io import write_mp4

    path = tmp_path / "clip.mp4"
    write_mp4(path, frames=30, width=96, height=64)
    # 96x64 -> 64x42 (sides kept even)
    code = run(str(path), "--bands", "4", "--max-lag", "8", "--size", "64")
    assert code in (0, 1)  # a drifting pattern may or may not follow a power law
    assert "frames 30 x 1 ch x 42x64" in capsys.readouterr().out


def test_errors_before_any_work(tmp_path, latent_file):
    with pytest.raises(CliError, match="not found"):
        run(str(tmp_path / "missing.mp4"))
    with pytest.raises(CliError, match=r"\.png"):
        run(str(latent_file), "--plot", str(tmp_path / "fig.jpg"))
    with pytest.raises(CliError, match="fit-bands"):
        run(str(latent_file), "--bands", "8", "--fit-bands", "5:9")
    with pytest.raises(ValueError, match="too short"):
        run(str(latent_file), "--bands", "8", "--max-lag", "200")
    assert not any(tmp_path.iterdir())
