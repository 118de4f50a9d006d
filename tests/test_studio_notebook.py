"""notebooks/walkthrough.ipynb runs end to end (small sizes): data, training, sampling, views, FVD, study batch."""
from __future__ import annotations

from pathlib import Path

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "walkthrough.ipynb"


def test_walkthrough_notebook_executes(tmp_path, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("MMDIFF_NOTEBOOK_SMALL", "1")
    monkeypatch.setenv("MMDIFF_NOTEBOOK_WORK", str(tmp_path / "work"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    text = "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    work = tmp_path / "work"
    assert (work / "run" / "last.pt").is_file() and (work / "run" / "log.csv").is_file()
    assert "trained to step 2" in text
    assert len(list((work / "samples").glob("*.mp4"))) == 2 and (work / "compare.png").is_file()
    assert "AV-Align" in text
    assert ("FVD" in text) or ("fvd skipped" in text and "i3d-kinetics-400.ckpt" in text)
    assert (work / "study-turing.zip").is_file() and "tasks: ['turing']" in text
    images = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) >= 3                      # loss curve, a clip's view, the real/generated comparison
