"""Which segmentation backend runs: `auto`'s choice, and `sam` never falling back silently."""

from __future__ import annotations

import pytest

from pipeline import segmentation, u2net
from pipeline.errors import BackendUnavailableError, InputError
from pipeline.sam import forget_sam_segmenters
from pipeline.segmentation import describe_segmentation_backend, get_segmenter


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    forget_sam_segmenters()
    yield
    forget_sam_segmenters()


def test_auto_on_a_cpu_uses_the_fused_cut_out_for_uploads(tiny_sam_folder, monkeypatch):
    monkeypatch.setattr(segmentation, "_gpu_available", lambda: False)
    assert get_segmenter("auto", str(tiny_sam_folder)).name == "fused"
    assert get_segmenter("auto", str(tiny_sam_folder), for_refinement=True).name == "sam"
    description = describe_segmentation_backend("auto", str(tiny_sam_folder))
    assert description.startswith("Cut-out: fused") and "no GPU" in description


def test_auto_on_a_cpu_without_the_u2net_package_uses_the_classic_cut_out(monkeypatch):
    monkeypatch.setattr(segmentation, "_gpu_available", lambda: False)
    monkeypatch.setattr(u2net, "DISTRIBUTION", "no-such-distribution")
    monkeypatch.setattr(u2net, "_session", None)
    monkeypatch.setattr(segmentation, "_fused", None)
    assert get_segmenter("auto").name == "classic"
    assert "classic (U-2-Net-p cannot run" in describe_segmentation_backend("auto")
    with pytest.raises(BackendUnavailableError, match="no-such-distribution"):
        get_segmenter("fused")


def test_auto_on_a_gpu_uses_sam_when_it_loads(tiny_sam_folder, monkeypatch):
    monkeypatch.setattr(segmentation, "_gpu_available", lambda: True)
    assert get_segmenter("auto", str(tiny_sam_folder)).name == "sam"
    assert describe_segmentation_backend("auto", str(tiny_sam_folder)).startswith("Cut-out: SAM")


def test_auto_falls_back_to_fused_when_sam_weights_are_missing(monkeypatch):
    monkeypatch.setattr(segmentation, "_gpu_available", lambda: True)
    assert get_segmenter("auto", "no-such-org/no-such-sam").name == "fused"
    assert get_segmenter("auto", "no-such-org/no-such-sam", for_refinement=True).name == "fused"
    assert "because SAM cannot run here" in describe_segmentation_backend("auto", "no-such-org/no-such-sam")


def test_sam_asked_for_never_falls_back(tiny_sam_folder):
    assert get_segmenter("sam", str(tiny_sam_folder)).name == "sam"
    with pytest.raises(BackendUnavailableError, match="SAM"):
        get_segmenter("sam", "no-such-org/no-such-sam")


def test_unknown_backend_is_explained():
    with pytest.raises(InputError, match="auto, classic, fused, sam"):
        get_segmenter("magic")
