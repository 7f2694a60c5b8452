import pytest

from tests.helpers import smooth_image, write_png


@pytest.fixture()
def tiny_dataset(tmp_path):
    """Three small smooth images (a few training steps' worth)."""
    d = tmp_path / "train"
    d.mkdir()
    for i in range(3):
        write_png(d / f"img{i}.png", smooth_image(48 + 8 * i, 64, seed=i))
    return d
