"""In the real ComfyUI on the CPU: peak memory and time to the first playable frame of FadeMem
Sampler + Streaming Save vs FadeMem Sampler -> core VAE Decode -> Create Video -> Save Video.

The method of bench_streaming_save.py, inside ComfyUI: the tiny model, 240 latent frames (a 60 s
run's length) at 128x128, 4 steps, FadeMem Cache(12); a reduced-width Wan 2.1 VAE (base width 16,
levels 1, 2, 4, 4 as in the real one, random weights) built by ComfyUI's own Wan VAE module and wrapped in core's
``VAE`` object, so core VAE Decode and the streaming node get the same VAE.  Each case runs in a
fresh ComfyUI (``--cpu``; ``$COMFYUI_PATH``, ``$COMFYUI_PYTHON`` as for the real-ComfyUI tests),
interleaved, best of ``--repeat``.  A small warm-up prompt first loads the model and the VAE
(cached by ComfyUI for the measured prompt); then the peak RSS of the ComfyUI process is reset
(``/proc/PID/clear_refs``) and the measured prompt's peak is reported above the RSS before it.
Times are the ComfyUI process's CPU time (all threads) from queueing: the first playable frame
is the first live chunk file (web/fademem_live.js plays it) for streaming, the finished Save
Video file for the one-shot graph (nothing is playable before), and the first finished 10 s file.

    COMFYUI_PATH=/path/to/ComfyUI COMFYUI_PYTHON=/path/to/python python bench/bench_comfy_streaming_save.py
"""
from __future__ import annotations

import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from bench_streaming_save import arguments  # noqa: E402  (the same options)
from tests.support.comfy_host import (COMFYUI_PATH, HELPER, TINY, make_base, start_comfy,  # noqa: E402
                                      tiny_graph)

REDUCED_VAE = '''

class FadeMemBenchReducedVAE:
    """Bench only: core's VAE object around a reduced-width Wan 2.1 VAE (ComfyUI's own module,
    random weights): core fixes the widths of a Wan VAE it loads, so they are narrowed here."""

    CATEGORY = "FadeMem/testing"
    RETURN_TYPES = ("VAE",)
    FUNCTION = "make"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"seed": ("INT", {"default": 0, "min": 0, "max": 2**31})}}

    def make(self, seed):
        import torch
        import comfy.ldm.wan.vae as wan
        import comfy.sd
        from fademem_core.rollout.vae_testing import randomize_

        real = wan.WanVAE
        narrow = dict(dim=16)  # a sixth of the width; the levels (1, 2, 4, 4) as in the real one
        torch.manual_seed(seed)
        model = randomize_(real(z_dim=16, num_res_blocks=2, attn_scales=[],
                                temperal_downsample=[False, True, True], dropout=0.0, **narrow))
        wan.WanVAE = lambda **kw: real(**{**kw, **narrow})
        try:
            vae = comfy.sd.VAE(sd=model.state_dict())
        finally:
            wan.WanVAE = real
        return (vae,)


NODE_CLASS_MAPPINGS["FadeMemBenchReducedVAE"] = FadeMemBenchReducedVAE
'''


def graph(mode: str, length: int, size: int, prefix: str) -> dict:
    g = {k: v for k, v in tiny_graph().items() if k in ("1", "2", "3")}
    g["3"]["inputs"]["budget"] = 12
    g["4"] = {"class_type": "FadeMemBenchReducedVAE", "inputs": {"seed": 0}}
    common = {"model": ["1", 0], "positive": ["2", 0], "cache": ["3", 0], "width": size,
              "height": size, "length": length, "chunk": 3, "steps": 4, "shift": 5.0, "seed": 0,
              "context_noise": 0.0, "context_input": "clean", "switch": "auto"}
    if mode == "stream":
        g["8"] = {"class_type": "FadeMemStreamingSave", "inputs": {
            **common, "vae": ["4", 0], "until_cancel": False, "filename_prefix": prefix,
            "segment_seconds": 10}}
    else:
        g["5"] = {"class_type": "FadeMemSampler", "inputs": common}
        g["6"] = {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": ["4", 0]}}
        g["7"] = {"class_type": "CreateVideo", "inputs": {"images": ["6", 0], "fps": 16.0}}
        g["9"] = {"class_type": "SaveVideo", "inputs": {"video": ["7", 0], "filename_prefix": prefix,
                                                         "format": "auto", "codec": "auto"}}
    return g


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int, key: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(key)


def run_case(mode: str, frames: int, size: int) -> dict:
    length = 1 + 4 * (frames - 1)
    with tempfile.TemporaryDirectory() as d:
        base = make_base(Path(d), ROOT, HELPER + REDUCED_VAE, TINY)
        with start_comfy(base) as comfy:
            pid = comfy.proc.pid
            warm = comfy.run(graph(mode, 9, size, "warm/v"))
            assert warm["status"]["status_str"] == "success", comfy.log_tail()
            Path(f"/proc/{pid}/clear_refs").write_text("5")  # peak RSS := RSS now
            before = rss_mib(pid, "VmRSS")
            print(f"  {mode}: ComfyUI pid {pid}, RSS before the prompt {before:.0f} MiB", flush=True)
            live, out = base / "temp" / "fademem_live", base / "output" / "bench"
            status, body = comfy.post_json("/prompt", {"prompt": graph(mode, length, size, "bench/v"),
                                                       "client_id": "bench"})
            assert status == 200, body
            t0, first, first_file = cpu_seconds(pid), None, None
            deadline, polls = time.monotonic() + 3600, 0
            while True:
                if first is None and live.is_dir() and any(live.glob("run_*/chunk_*.mp4")):
                    first = cpu_seconds(pid) - t0
                    print(f"  {mode}: first playable frame after {first:.1f} s CPU; peak so far "
                          f"{rss_mib(pid, 'VmHWM') - before:.0f} MiB", flush=True)
                if first_file is None and mode == "stream" and out.is_dir() and any(out.glob("v_*.mp4")):
                    first_file = cpu_seconds(pid) - t0
                polls += 1
                if polls % 10 == 0:  # the server's CPU time counts: ask it twice a second only
                    _, history = comfy.get_json(f"/history/{body['prompt_id']}")
                    entry = history.get(body["prompt_id"])
                    if entry and entry.get("status", {}).get("completed") is not None:
                        break
                assert time.monotonic() < deadline and comfy.proc.poll() is None, comfy.log_tail()
                time.sleep(0.05)
            total = cpu_seconds(pid) - t0
            assert entry["status"]["status_str"] == "success", f"{entry['status']}\n{comfy.log_tail()}"
            files = sorted(p.name for p in out.glob("v_*.mp4"))
            return {"peak_mib": rss_mib(pid, "VmHWM") - before, "first_s": first if first is not None else total,
                    "first_file_s": first_file if first_file is not None else total, "cpu_s": total,
                    "files": len(files)}


def main() -> None:
    args = arguments(__doc__)
    if not COMFYUI_PATH:
        raise SystemExit("set COMFYUI_PATH (and COMFYUI_PYTHON) to a ComfyUI checkout and its Python")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; ComfyUI at {COMFYUI_PATH} --cpu")
    print(f"tiny model + reduced Wan VAE (ComfyUI's module, base width 16), {args.frames} latent frames at "
          f"{args.size}x{args.size}; peak RSS of the ComfyUI process above its RSS before the prompt")
    results = {m: [] for m in ("oneshot", "stream")}
    for _ in range(args.repeat):  # interleaved
        for mode in results:
            results[mode].append(run_case(mode, args.frames, args.size))
            print(f"  {mode}: {results[mode][-1]}", flush=True)
    for mode, label in (("oneshot", "Sampler -> VAE Decode -> Save Video"), ("stream", "Streaming Save")):
        best = {k: min(r[k] for r in results[mode]) for k in ("peak_mib", "first_s", "first_file_s", "cpu_s")}
        print(f"{label:>36}: peak {best['peak_mib']:7.0f} MiB, first playable frame after "
              f"{best['first_s']:6.1f} s CPU, first finished file {best['first_file_s']:6.1f} s, "
              f"total {best['cpu_s']:6.1f} s CPU, {results[mode][0]['files']} file(s)")


if __name__ == "__main__":
    main()
