"""The two-thread step of benchmarks/overlap_step.py keeps the weights bit-identical (its claim)."""

import copy
import importlib.util
from pathlib import Path

import pytest
import torch

from aelab.dense_step import DenseStep
from aelab.engine import to_float_batch
from aelab.models import Autoencoder
from aelab.optim import make_optimizer

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "overlap_step.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("overlap_step", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_overlapped_step_gives_the_one_thread_weights(mnist):
    overlap = _load_script()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        model = Autoencoder()
        optimizer = make_optimizer(model, 1e-3, torch.device("cpu"))
        batches = [to_float_batch(mnist.train_images[128 * i:128 * (i + 1)]) for i in range(12)]
        DenseStep(model)(batches[0])
        optimizer.step()
        twin = copy.deepcopy(model)
        twin_optimizer = make_optimizer(twin, 1e-3, torch.device("cpu"))
        twin_optimizer.load_state_dict(copy.deepcopy(optimizer.state_dict()))
        overlapped, one_thread = overlap.OverlappedStep(model, optimizer), DenseStep(twin)
        before = [p.clone() for p in model.parameters()]
        for x in batches[1:]:
            loss = overlapped(x)
            twin_loss, _ = one_thread(x)
            twin_optimizer.step()
            assert torch.equal(loss, twin_loss)
        assert all(not torch.equal(p, b) for p, b in zip(model.parameters(), before))  # every layer moved
        for p, q in zip(model.parameters(), twin.parameters()):
            assert torch.equal(p, q)
        for a, b in zip(model.buffers(), twin.buffers()):
            assert torch.equal(a, b)
    finally:
        torch.set_num_threads(threads)


def test_a_failing_worker_task_raises_in_the_waiting_thread():
    worker = _load_script().Worker()
    worker.tasks.put(lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        worker.wait()
    worker.tasks.put(lambda: None)  # and the worker still runs the next task
    worker.wait()
