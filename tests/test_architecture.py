"""The package's layers: imports point down only, and the PHY path never loads torch."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "testbed"

# bottom to top; packages in one layer are side by side and unaware of each other, except the
# pairs in ALLOWED_SIDEWAYS
LAYERS = [
    {"core"},
    {"codec", "akb", "phy", "digital"},
    {"zoo"},
    {"gr", "grc"},
    {"radio", "link"},
    {"experiments", "agent"},
    {"cli"},
    {"__main__"},
]
ALLOWED_SIDEWAYS = {("akb", "codec"),    # the AKB codec builds on codec v1's layers and model
                    ("link", "radio")}   # front-ends open the radios
LEVEL = {p: i for i, layer in enumerate(LAYERS) for p in layer}
MAX_LINES = 400


def _modules():
    for f in sorted(PKG.rglob("*.py")):
        rel = f.relative_to(PKG)
        yield f, rel.parts[0].removesuffix(".py") if len(rel.parts) == 1 else rel.parts[0]


def _imports(f: Path):
    """Every testbed package a module imports (top-level and function-local), absolute or relative."""
    rel = f.relative_to(PKG.parent).with_suffix("").parts
    pkg = list(rel[:-1]) if rel[-1] != "__init__" else list(rel[:-1])
    for node in ast.walk(ast.parse(f.read_text(), str(f))):
        names = []
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg[:len(pkg) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
                names = [mod + "." + a.name for a in node.names] if not node.module else [mod]
            elif node.module:
                names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for n in names:
            parts = n.split(".")
            if parts[0] == "testbed" and len(parts) > 1:
                yield node.lineno, parts[1]


def test_every_package_has_a_layer():
    missing = {top for _, top in _modules()} - set(LEVEL) - {"__init__"}
    assert not missing, f"packages without a layer in this test: {missing}"


def test_imports_point_down_only():
    bad = []
    for f, top in _modules():
        if top == "__init__":
            continue
        for line, target in _imports(f):
            if target == top or target == "__version__" or target not in LEVEL:
                continue
            if LEVEL[target] > LEVEL[top] or (LEVEL[target] == LEVEL[top] and (top, target) not in ALLOWED_SIDEWAYS):
                bad.append(f"{f.relative_to(PKG.parent)}:{line} ({top}) imports testbed.{target}")
    assert not bad, "imports pointing up or sideways:\n" + "\n".join(bad)


def test_no_module_over_400_lines():
    long = [f"{f.relative_to(PKG.parent)}: {n}" for f, _ in _modules()
            if (n := len(f.read_text().splitlines())) > MAX_LINES]
    assert not long, f"modules over {MAX_LINES} lines: {long}"


@pytest.mark.slow
def test_phy_gr_and_onnx_runtime_do_not_load_torch():
    """Every PHY module, the OFDM receiver, the codec blocks and the onnxruntime codecs (with
    the registry) import without torch, in a fresh interpreter."""
    phy = sorted(f"testbed.phy.{p.stem}" for p in (PKG / "phy").glob("*.py") if p.stem != "__init__")
    mods = phy + ["testbed.gr.ofdm_rx", "testbed.gr.ofdm_tx", "testbed.gr.jscc_encoder", "testbed.gr.jscc_decoder",
                  "testbed.zoo"]
    code = ("import importlib, sys\n"
            f"for m in {mods!r}:\n    importlib.import_module(m)\n"
            "from testbed.zoo import open_codec\n"
            "open_codec('jscc-v1'); open_codec('akb-v1')\n"
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == "[]", f"torch was loaded: {out.stdout[:300]}"
