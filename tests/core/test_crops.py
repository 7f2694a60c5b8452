"""Training crops held on a device (DeviceCropSampler) against the images they come from."""
import numpy as np
import pytest
import torch

from testbed.core.crops import DeviceCropSampler


def _windows(a: np.ndarray, c: int):
    for y in range(a.shape[0] - c + 1):
        for x in range(a.shape[1] - c + 1):
            yield a[y:y + c, x:x + c]


def _is_window(crop: np.ndarray, arrays, c: int) -> tuple[bool, bool, bool]:
    """Whether ``crop`` is a window of an image, unflipped or flipped (found, flipped_x, flipped_y)."""
    for a in arrays:
        for fy in (False, True):
            for fx in (False, True):
                v = crop[::-1] if fy else crop
                v = v[:, ::-1] if fx else v
                if any(np.array_equal(w, v) for w in _windows(a, c)):
                    return True, fx, fy
    return False, False, False


def test_crops_are_windows_of_the_images_with_both_flips():
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 256, (20, 26, 3), dtype=np.uint8), rng.integers(0, 256, (17, 14, 3), dtype=np.uint8)]
    s = DeviceCropSampler(arrays, 12)
    x = s.sample(torch.Generator().manual_seed(1), 40)
    assert x.shape == (40, 3, 12, 12) and x.dtype == torch.float32 and 0 <= float(x.min()) and float(x.max()) <= 1
    seen = set()
    for i in range(40):
        crop = np.round(x[i].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
        found, fx, fy = _is_window(crop, arrays, 12)
        assert found, i
        seen.add((fx, fy))
    assert len(seen) >= 3          # flips are drawn (4 combinations; 40 draws)


def test_same_generator_same_batch_and_small_images_are_padded():
    rng = np.random.default_rng(2)
    arrays = [rng.integers(0, 256, (9, 30, 3), dtype=np.uint8)]     # shorter than the crop
    s = DeviceCropSampler(arrays, 16)
    a = s.sample(torch.Generator().manual_seed(7), 5)
    b = s.sample(torch.Generator().manual_seed(7), 5)
    assert torch.equal(a, b) and a.shape == (5, 3, 16, 16)
    padded = np.pad(arrays[0], ((0, 7), (0, 0), (0, 0)), mode="reflect")
    crop = np.round(a[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    assert _is_window(crop, [padded], 16)[0]


def test_mosaic_canvas_is_made_of_crops():
    rng = np.random.default_rng(3)
    arrays = [rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)]
    x = DeviceCropSampler(arrays, 8, mosaic=2).sample(torch.Generator().manual_seed(0), 3)
    assert x.shape == (3, 3, 16, 16)
    for q in (x[0, :, :8, :8], x[0, :, :8, 8:], x[0, :, 8:, :8], x[0, :, 8:, 8:]):
        crop = np.round(q.permute(1, 2, 0).numpy() * 255).astype(np.uint8)
        assert _is_window(crop, arrays, 8)[0]


def test_no_images_is_refused():
    with pytest.raises(ValueError, match="no training images"):
        DeviceCropSampler([], 8)
