"""Where a result was made: package version, git commit, library versions and the device.

``environment_info()`` is a JSON-ready dict; ``environment_lines()`` the block a run logs at
the top of ``out.txt`` (upstream DomainBed printed one too). Neither holds a time, a host
name or a path, so files that embed them stay byte-identical when remade on the same setup.
"""

import functools
import os
import platform
import subprocess
from typing import Any, Dict, List, Optional

PACKAGE = "domainbed-ratatouille"


def _package_version() -> str:
    try:
        from importlib import metadata
        return metadata.version(PACKAGE)
    except Exception:  # not installed (e.g. run from a source tree)
        from domainbed import __version__
        return __version__


def _git(args: List[str], cwd: str) -> Optional[str]:
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                             timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


@functools.lru_cache(maxsize=1)
def git_commit() -> Optional[Dict[str, Any]]:
    """``{"commit": sha, "dirty": bool}`` of the source tree the package runs from, or None
    when it is not in a git work tree (an installed wheel)."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sha = _git(["rev-parse", "HEAD"], here)
    if not sha:
        return None
    status = _git(["status", "--porcelain", "--untracked-files=no"], here)
    return {"commit": sha, "dirty": bool(status)}


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def device_name(device=None) -> str:
    """The name of the device that computes: the GPU's, else the CPU's."""
    import torch
    from domainbed.lib.device import get_device
    device = torch.device(device) if device is not None else get_device()
    if device.type == "cuda" and torch.cuda.is_available():
        return torch.cuda.get_device_name(device)
    return f"cpu ({_cpu_name()})"


def _optional_version(module: str) -> Optional[str]:
    try:
        from importlib import metadata
        return metadata.version(module)
    except Exception:
        return None


@functools.lru_cache(maxsize=4)
def _environment(device_key: Optional[str]) -> Dict[str, Any]:
    import numpy
    import torch
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    info: Dict[str, Any] = {
        "package": PACKAGE,
        "package_version": _package_version(),
        "git": git_commit(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": _optional_version("torchvision"),
        "timm": _optional_version("timm"),
        "numpy": numpy.__version__,
        "cuda": torch.version.cuda,
        "cudnn": cudnn,
        "device": device_name(device_key),
        "platform": platform.platform(terse=True),
    }
    return info


def environment_info(device=None) -> Dict[str, Any]:
    """Versions and device as a JSON-ready dict (a copy: callers may change it)."""
    key = None if device is None else str(device)
    return dict(_environment(key))


def environment_lines(device=None) -> List[str]:
    """The "Environment:" block: one line per entry, the git commit when there is one."""
    info = environment_info(device)
    git = info.get("git")
    commit = (f"{git['commit']}{' (with uncommitted changes)' if git['dirty'] else ''}"
              if git else "none (not a git work tree)")
    rows = [("Package", f"{info['package']} {info['package_version']}"), ("Git commit", commit),
            ("Python", info["python"]), ("PyTorch", info["torch"]),
            ("Torchvision", info["torchvision"]), ("timm", info["timm"] or "not installed"),
            ("NumPy", info["numpy"]), ("CUDA", info["cuda"] or "none"),
            ("cuDNN", info["cudnn"] or "none"), ("Device", info["device"]),
            ("Platform", info["platform"])]
    return ["Environment:"] + [f"    {name}: {value}" for name, value in rows]
