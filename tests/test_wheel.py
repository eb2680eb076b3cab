"""snlib as an installed library: the wheel built from this tree, installed into a fresh virtual environment that
sees the current one's packages (torch is not downloaded again), runs the loss, the evaluator and the published
numbers outside the repository, and says in a record's provenance that it has no git checkout. Offline: the build
and the install use no index."""
import os
import shutil
import site
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

USE_THE_WHEEL = textwrap.dedent("""
    import sys
    from pathlib import Path

    import torch
    import snlib
    from snlib.evaluation import evaluate_features
    from snlib.losses import SupportNeighborLoss
    from snlib.paper import published

    assert Path(snlib.__file__).resolve().is_relative_to(Path(sys.prefix).resolve()), snlib.__file__
    features = torch.nn.functional.normalize(torch.randn(8, 16, dtype=torch.float64), dim=1)
    loss = SupportNeighborLoss(k=3)(features, torch.tensor([0, 0, 1, 1, 2, 2, 3, 3]))
    assert torch.isfinite(loss) and loss > 0
    # hand-worked: query 0's match ranks first (AP 1); query 1's second, behind another identity (AP 1/2)
    result = evaluate_features(torch.tensor([[1.0, 0.0], [0.0, 1.0]]),
                               torch.tensor([[0.9, 0.1], [0.6, 0.8], [0.05, 1.0]]),
                               [1, 2], [1, 2, 3], [0, 0], [1, 1, 1], max_rank=3)
    assert abs(result.mAP - 0.75) < 1e-9 and result.rank(1) == 0.5, result
    table = published("table1")
    assert "SN loss" in set(table["method"]), table
    from snlib.provenance import provenance
    p = provenance()    # no git checkout: the package version, and why there is no commit
    assert p["commit"] is None and p["snlib"] == snlib.__version__ and "installed package" in p["source"], p
    print("wheel ok", snlib.__version__, len(table))
""")


def _build_wheel(tmp: Path) -> Path:
    """The wheel of a copy of the package's sources (the build writes nothing into the repository)."""
    src = tmp / "src"
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(ROOT / "snlib", src / "snlib", ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--no-index", "--wheel-dir", str(tmp / "dist"), str(src)], check=True)
    (wheel,) = (tmp / "dist").glob("snlib-*.whl")
    return wheel


def _fresh_venv(path: Path) -> Path:
    """A virtual environment with --system-site-packages that also sees the packages of the environment running
    the tests when that is itself a venv (a .pth file: directories only, so its editable snlib stays out)."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", "--system-site-packages", str(path)], check=True)
    python = path / "bin" / "python"
    purelib = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    if sys.prefix != sys.base_prefix:
        Path(purelib, "_outer_environment.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    return python


@pytest.mark.slow
def test_wheel_installs_and_runs_outside_the_repository(tmp_path):
    wheel = _build_wheel(tmp_path)
    python = _fresh_venv(tmp_path / "venv")
    # --no-index: the dependency ranges must be met by the packages already there (nothing is downloaded)
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-index",
                    "--no-build-isolation", str(wheel)], check=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SNLIB_CACHE")}
    out = subprocess.run([python, "-c", USE_THE_WHEEL], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "wheel ok 0.1.0" in out.stdout
    names = subprocess.run([python, "-m", "zipfile", "-l", str(wheel)], capture_output=True, text=True).stdout
    assert "snlib/published/table1_market1501.csv" in names and "snlib/integrations/pml.py" in names
    assert "licenses/LICENSE" in names
