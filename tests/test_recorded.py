"""What a weights file records about itself (fademem_core.model.recorded) and the generate
options made from it (fademem_core.rollout.timesteps.sampler_options)."""
from __future__ import annotations

import json
import shutil

import pytest

from fademem_core import SamplerRecord, embedded_weights, load_model, sampler_options, sampler_summary
from fademem_core.model.recorded import EMBEDDED_WEIGHTS, read_record, sampler_record


def test_the_embedded_weights_are_the_package_files_and_carry_their_json_record():
    for name, file in EMBEDDED_WEIGHTS.items():
        path = embedded_weights(name)
        assert path.name == file and path.parent.name == "weights" and path.is_file()
        spec = json.loads(path.with_suffix(".json").read_text())["sampler"]
        assert load_model(path).sampler_record == SamplerRecord(spec["name"], spec["steps"], spec["shift"])
    with pytest.raises(ValueError, match="embedded weights must be one of"):
        embedded_weights("tiny")


def test_a_checkpoint_without_a_record_records_nothing(tiny_checkpoint):
    assert read_record(tiny_checkpoint) == {}
    assert load_model(tiny_checkpoint).sampler_record is None


def test_a_record_beside_a_copy_is_read_and_a_broken_one_refused_before_loading(tiny_checkpoint, tmp_path):
    copy = tmp_path / "mine.safetensors"
    shutil.copy(tiny_checkpoint, copy)
    copy.with_suffix(".json").write_text(json.dumps({"sampler": {"name": "euler", "steps": 7, "shift": 3.0}}))
    assert load_model(copy).sampler_record == SamplerRecord("euler", 7, 3.0)
    copy.with_suffix(".json").write_text("{not json")
    with pytest.raises(ValueError, match="mine.json: the record next to the weights is not readable JSON"):
        load_model(copy)
    copy.with_suffix(".json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="expected a JSON object"):
        load_model(copy)


@pytest.mark.parametrize("spec,match", [
    ("euler", "must be an object"), ({"name": "ddim", "steps": 4}, "sampler name"),
    ({"name": "euler", "steps": 0}, "steps must be an integer >= 1"),
    ({"name": "euler", "steps": 2.5}, "steps must be an integer"),
    ({"name": "euler", "steps": 12, "shift": -1}, "shift must be a positive number"),
    ({"name": "euler", "steps": True}, "steps")])
def test_bad_sampler_records_are_refused_naming_the_field(spec, match):
    with pytest.raises(ValueError, match=match):
        sampler_record({"sampler": spec}, "x.json")


def test_sampler_record_defaults_and_absence():
    assert sampler_record({}) is None
    assert sampler_record({"sampler": {"name": "few_step", "steps": 4}}) == SamplerRecord("few_step", 4, 5.0)


def test_sampler_options_auto_takes_the_record_else_the_given_options():
    record = SamplerRecord("euler", 12, 5.0)
    # written out: 12 steps evenly spaced from 1000, before the shift
    got = sampler_options(record)
    assert (got["sampler"], got["shift"]) == ("euler", 5.0)
    assert got["steps"] == pytest.approx([1000 - 1000 * i / 12 for i in range(12)], rel=1e-12)
    assert sampler_options(record, "auto", 2, 3.0)["steps"] == sampler_options(record)["steps"]
    assert sampler_options(record, "few_step", 2, 3.0) == {"sampler": "few_step", "steps": [1000.0, 500.0],
                                                           "shift": 3.0}
    assert sampler_options(None) == {"sampler": "few_step", "steps": [1000.0, 750.0, 500.0, 250.0],
                                     "shift": 5.0}
    assert sampler_options(None, "euler", 3)["steps"] == pytest.approx([1000.0, 2000 / 3, 1000 / 3], rel=1e-12)
    with pytest.raises(ValueError, match="sampler must be one of"):
        sampler_options(record, "ddim")
    with pytest.raises(ValueError, match="steps must be an integer >= 1"):
        sampler_options(None, "euler", 0)


def test_sampler_options_take_the_timesteps_themselves_too():
    """The command line's --steps: a list of timesteps, used as given (not the record's)."""
    record = SamplerRecord("euler", 12, 5.0)
    assert sampler_options(None, "euler", (1000, 400.5), 2.0) == {"sampler": "euler", "steps": [1000.0, 400.5],
                                                                  "shift": 2.0}
    assert sampler_options(record, "few_step", [900, 100]) == {"sampler": "few_step", "steps": [900.0, 100.0],
                                                               "shift": 5.0}
    assert sampler_options(record, "auto", [900, 100], 2.0) == sampler_options(record)  # the record wins
    with pytest.raises(ValueError, match="strictly decreasing"):
        sampler_options(None, "euler", [250, 500])
    with pytest.raises(ValueError, match="timesteps in"):
        sampler_options(None, "few_step", [1000, 0])
    with pytest.raises(ValueError, match="steps must be an integer"):
        sampler_options(None, "few_step", True)
    with pytest.raises(ValueError, match="shift must be a positive number"):
        sampler_options(None, "few_step", 4, 0.0)


def test_sampler_summary_names_what_sampler_options_chose():
    kw = sampler_options(SamplerRecord("euler", 12, 5.0))
    assert sampler_summary(kw) == "sampler euler, 12 steps, shift 5"
    kw = sampler_options(None, "few_step", (1000.0, 500.0), 2.5)
    assert sampler_summary(kw) == "sampler few_step, 2 steps, shift 2.5"
