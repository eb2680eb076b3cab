"""README's "Use the loss in your own training loop" runs as written: its code blocks, in order, in one
namespace."""
import re
from pathlib import Path

import torch

README = Path(__file__).resolve().parents[1] / "README.md"
SECTION = "## Use the loss in your own training loop"


def _blocks() -> list[str]:
    text = README.read_text()
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    return re.findall(r"```python\n(.*?)```", text[start:end], re.S)


def test_the_training_loop_examples_run_and_train():
    blocks = _blocks()
    assert len(blocks) == 2
    namespace = {}
    torch.manual_seed(0)
    exec(compile(blocks[0], "README plain PyTorch", "exec"), namespace)
    first_loss = namespace["loss"].item()
    weights = [p.detach().clone() for p in namespace["model"].parameters()]
    exec(compile(blocks[1], "README pytorch-metric-learning", "exec"), namespace)
    assert torch.isfinite(namespace["loss"]) and first_loss > 0
    assert namespace["memory"].queue_idx > 0 or namespace["memory"].has_been_filled  # the bank took embeddings
    assert any(not torch.equal(a, b) for a, b in zip(weights, namespace["model"].parameters()))  # it trained
