"""umT5 prompt encoding and the prompt / schedule file formats."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fademem_core.model.textenc import TextEncoder
from fademem_core.rollout.prompts import read_prompt_file, read_schedule_file, schedule_to_latent_frames
from tests.support.tiny_assets import TINY_TEXT_DIM


@pytest.fixture(scope="module")
def encoder(tiny_wan_dir):
    return TextEncoder.from_wan_dir(tiny_wan_dir)


def test_encode_shape_and_zeroed_pads(encoder):
    out = encoder.encode(["a red fox walks", "the cat sleeps on the blue sofa"])
    assert out.shape == (2, 512, TINY_TEXT_DIM) and out.dtype == torch.float32
    # 4 words + eos = 5 real tokens, 7 + eos = 8: everything after is exactly zero
    assert out[0, :5].abs().sum(-1).min() > 0 and torch.all(out[0, 5:] == 0)
    assert out[1, :8].abs().sum(-1).min() > 0 and torch.all(out[1, 8:] == 0)


def test_encode_matches_direct_model_call(encoder):
    # independent reference: run the umT5 encoder on the tokens without padding at all
    ids = encoder.tokenizer("a red fox walks", return_tensors="pt").input_ids
    with torch.no_grad():
        ref = encoder.model(input_ids=ids).last_hidden_state
    out = encoder.encode("a red fox walks")
    assert torch.allclose(out[0, : ids.shape[1]], ref[0], atol=1e-5)


def test_prompts_are_cleaned_like_wan_pipelines(encoder):
    assert torch.equal(encoder.encode("  a red\n fox &amp;  walks "), encoder.encode("a red fox & walks"))


def test_missing_folders_fail_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="text_encoder"):
        TextEncoder.from_wan_dir(tmp_path)


def test_empty_prompt_rejected(encoder):
    with pytest.raises(ValueError, match="non-empty"):
        encoder.encode(["a fox", "  "])


def test_prompt_file(tmp_path):
    p = tmp_path / "p.txt"
    p.write_text("# comment\na red fox\n\n  the cat sleeps  \n", encoding="utf-8")
    assert read_prompt_file(p) == ["a red fox", "the cat sleeps"]
    (tmp_path / "e.txt").write_text("# only a comment\n\n")
    with pytest.raises(ValueError, match="no prompts"):
        read_prompt_file(tmp_path / "e.txt")
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        read_prompt_file(tmp_path / "nope.txt")


def test_schedule_file(tmp_path):
    p = tmp_path / "s.txt"
    p.write_text("0|a red fox\n# switch\n10|the fox | runs\n20.5|blue sky\n")
    assert read_schedule_file(p) == [(0.0, "a red fox"), (10.0, "the fox | runs"),
                                     (20.5, "blue sky")]


@pytest.mark.parametrize("text, match", [
    ("a red fox\n", "START_SECONDS"),
    ("x|a fox\n", "not a number"),
    ("1|a fox\n", "start at 0"),
    ("0|a\n5|b\n5|c\n", "increase"),
    ("0|a\nnan|b\n", "finite"),
    ("0|\n", "empty prompt"),
])
def test_bad_schedule_lines(tmp_path, text, match):
    p = tmp_path / "s.txt"
    p.write_text(text)
    with pytest.raises(ValueError, match=match):
        read_schedule_file(p)


def test_schedule_seconds_to_chunks():
    # 16 fps, 4 video frames per latent frame, chunks of 3 latent frames (0.75 s)
    sched = [(0.0, "a"), (10.0, "b"), (20.5, "c")]
    # 10 s = frame 160 = latent 40 -> chunk boundary 39; 20.5 s = frame 328 = latent 82 -> 81
    assert schedule_to_latent_frames(sched) == [(0, "a"), (39, "b"), (81, "c")]
    with pytest.raises(ValueError, match="same chunk"):
        schedule_to_latent_frames([(0.0, "a"), (0.1, "b")])
    with pytest.raises(ValueError, match="the prompt at 20.5s would take over at chunk 27 .* never be shown"):
        schedule_to_latent_frames(sched, num_latent_frames=60)


# ----------------------------------------------------------------------------- prompt starts
def _prompts_shown(starts, chunk, num_frames):
    """Independent reference: the prompt in use at each chunk start (the latest begun)."""
    return {max(i for i, s in enumerate(starts) if s <= k) for k in range(0, num_frames, chunk)}


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 5), st.integers(1, 30), st.lists(st.integers(1, 40), max_size=5, unique=True))
def test_prompt_starts_are_refused_exactly_when_a_prompt_would_never_show(chunk, num_frames, rest):
    from fademem_core.rollout.prompts import check_prompt_starts

    starts = [0] + sorted(s for s in rest if s < num_frames)
    shown = _prompts_shown(starts, chunk, num_frames)
    if len(shown) == len(starts):
        chunks = check_prompt_starts(starts, chunk, num_frames)
        assert chunks == [-(-s // chunk) for s in starts]
    else:
        with pytest.raises(ValueError, match="never be shown"):
            check_prompt_starts(starts, chunk, num_frames)


def test_prompt_start_refusal_names_the_prompts_and_the_chunk():
    from fademem_core.rollout.prompts import check_prompt_starts

    with pytest.raises(ValueError, match=r"^B and C take over in the same chunk, chunk 1 \(latent frames 3-5\)"):
        check_prompt_starts([0, 1, 2], 3, 9, ["A", "B", "C"])
    with pytest.raises(ValueError, match=r"^C would take over at chunk 3 .* last chunk 2 \(latent frames 6-7\)"):
        check_prompt_starts([0, 3, 7], 3, 8, ["A", "B", "C"])
