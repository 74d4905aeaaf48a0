"""reid_utils.training.accel: the device policy keeps the CPU numbers exactly as they were
(uint8 batches normalised like ``frames_to_tensor``, fp32 unless asked) and gives the
layouts and precisions it promises."""

import numpy as np
import pytest
import torch

from reid_utils.data.transforms import frames_to_tensor
from reid_utils.training import accel


def test_network_input_is_frames_to_tensor_bit_for_bit_in_channels_last():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(3, 4, 8, 6, 3), dtype=np.uint8)  # B, L, H, W, 3
    ref = torch.stack([frames_to_tensor(f) for f in frames])
    x = accel.network_input(torch.from_numpy(frames), torch.device("cpu"))
    assert x.dtype == torch.float32 and x.shape == (3, 3, 4, 8, 6)
    assert torch.equal(x, ref)
    assert x.is_contiguous(memory_format=torch.channels_last_3d)
    with pytest.raises(ValueError, match="uint8"):
        accel.network_input(torch.zeros(3, 4, 8, 6, 3), torch.device("cpu"))


def test_precision_defaults():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert accel.use_amp(cpu) is False and accel.use_amp(cuda) is True
    assert accel.use_amp(cpu, True) is True and accel.use_amp(cuda, False) is False
    lin = torch.nn.Linear(4, 4)
    with accel.autocast(cpu):
        assert lin(torch.randn(2, 4)).dtype == torch.float32
    with accel.autocast(cpu, True):
        assert lin(torch.randn(2, 4)).dtype == torch.bfloat16
        with accel.autocast(cpu, False):  # an explicit fp32 region inside
            assert lin(torch.randn(2, 4)).dtype == torch.float32


def test_host_buffers_and_batches_on_the_cpu():
    cpu = torch.device("cpu")
    buf = accel.pinned_empty((2, 3), torch.uint8, cpu)
    assert buf.shape == (2, 3) and buf.dtype == torch.uint8 and not buf.is_pinned()
    x = torch.arange(6).reshape(3, 2)
    assert accel.pin(x, cpu) is x
    parts = [x[:1], x[1:]]
    assert torch.equal(accel.to_device_batch(parts, cpu), x)
    assert accel.to_device_batch([x], cpu) is x
    with pytest.raises(ValueError, match="at least one"):
        accel.to_device_batch([], cpu)


def test_prepare_model_and_cudnn_flag():
    m = accel.prepare_model(torch.nn.Conv3d(3, 4, 3), torch.device("cpu"))
    assert m.weight.is_contiguous(memory_format=torch.channels_last_3d)
    old = torch.backends.cudnn.benchmark
    with accel.cudnn_benchmark(not old):
        assert torch.backends.cudnn.benchmark is (not old)
    assert torch.backends.cudnn.benchmark is old
    accel.configure_backends(torch.device("cpu"))  # nothing to set on the CPU
    assert torch.backends.cudnn.benchmark is old
