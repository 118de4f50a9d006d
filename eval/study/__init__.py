"""User studies on Mechanical Turk (MM-Diffusion Sec. 4.3, 4.6, Table A.2, Appendix B).

Functions for other parts (the Gradio studio calls these directly; no argparse, no gradio inside):
- `build_study(StudyConfig(...), out_dir) -> BuildResult`: media, batch CSVs, templates, previews, key.
- `analyze_results(results_csvs, study_dir, out_dir=None, qc=QCConfig(...)) -> AnalysisResult`.
- `publish_study(study_dir, make_client(sandbox=True), HitSettings(...)) -> dict`.
CLI: `python -m eval.study build|analyze|publish --help`; guide: docs/study.md.
"""
from .analyze import AnalysisResult, analyze_results
from .build import BuildResult, StudyConfig, build_study
from .publish import HitSettings, make_client, publish_study
from .qc import QCConfig

__all__ = ["AnalysisResult", "BuildResult", "HitSettings", "QCConfig", "StudyConfig", "analyze_results",
           "build_study", "make_client", "publish_study"]
