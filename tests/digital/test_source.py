"""Source coding to a byte budget, and what a receiver shows from an error-free prefix."""
import numpy as np
import pytest

from testbed.core.metrics import psnr
from testbed.core.paths import samples_dir
from testbed.digital import source
from testbed.digital.source import GRAY, decode_prefix


@pytest.fixture(scope="module")
def img():
    from PIL import Image

    with Image.open(sorted(samples_dir().glob("*.png"))[0]) as im:
        return np.asarray(im.convert("RGB"))[:256, :384].copy()


@pytest.mark.parametrize("kind", source.SOURCES)
def test_budget_is_kept_and_a_whole_stream_decodes(img, kind):
    for budget in (3000, 12000):
        data = source.encode(kind, img, budget)
        assert data is not None and len(data) <= budget
        out, ok = decode_prefix(kind, data, len(data), *img.shape[:2])
        assert ok and out.shape == img.shape
        assert psnr(img, out) > 18
    small = source.encode(kind, img, 3000)
    large = source.encode(kind, img, 12000)
    h, w = img.shape[:2]
    assert psnr(img, decode_prefix(kind, large, len(large), h, w)[0]) > psnr(img, decode_prefix(kind, small, len(small), h, w)[0])


def test_jpeg2000_prefixes_give_coarser_whole_images(img):
    data = source.jpeg2000_at_budget(img, 8000)
    h, w = img.shape[:2]
    gray = np.full_like(img, GRAY)
    scores = [psnr(img, decode_prefix("jpeg2000", data, int(len(data) * f), h, w)[0]) for f in (0.15, 0.5, 1.0)]
    assert scores[0] < scores[1] < scores[2]
    assert scores[0] > psnr(img, gray) + 3       # a coarse image of the whole frame, not gray


def test_jpeg_prefix_keeps_the_rows_before_the_cut(img):
    data = source.jpeg_at_budget(img, 8000)
    out, ok = decode_prefix("jpeg", data, len(data) // 2, *img.shape[:2])
    assert ok
    top = slice(0, 32)
    assert psnr(img[top], out[top]) > 20                     # the first rows arrived
    assert psnr(img, out) < psnr(img, decode_prefix("jpeg", data, len(data), *img.shape[:2])[0])


@pytest.mark.parametrize("kind", source.SOURCES)
def test_nothing_decodable_gives_gray(img, kind):
    data = source.encode(kind, img, 6000)
    h, w = img.shape[:2]
    for stream, good in ((data, 0), (bytes(np.random.default_rng(0).integers(0, 256, 500, dtype=np.uint8)), 500)):
        out, ok = decode_prefix(kind, stream, good, h, w)
        assert not ok and (out == GRAY).all()
    out, ok = decode_prefix(kind, data, len(data), h + 8, w)         # not the announced size
    assert not ok


@pytest.mark.parametrize("kind", source.SOURCES)
def test_too_small_a_budget_is_none_and_the_smallest_stream_is_known(img, kind):
    need = source.smallest(kind, img)
    assert need > 50
    assert source.encode(kind, img, 50) is None
    with pytest.raises(ValueError, match="webp"):
        source.encode("webp", img, 1000)
