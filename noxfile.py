"""Run byhand under several torch versions and compare each with a baseline saved under torch 2.13.0.

    pip install nox
    nox -s baseline            # save docs/baselines/torch-2.13.0.json with the pinned torch
    nox -s upgrade             # for each version below: the suite, then baseline compare -> docs/

The older and newer releases come from the registry with their CUDA packages (about 2.6 GB each) and
run on the CPU. Comparisons are written as Markdown under docs/.
"""
import nox

BASELINE = "docs/baselines/torch-2.13.0.json"
VERSIONS = ["2.15.0", "2.14.0", "2.12.0", "2.4.1"]


@nox.session
def baseline(session: nox.Session) -> None:
    session.install("-c", "constraints.txt", "-e", ".")
    session.run("byhand", "baseline", "save", BASELINE)


@nox.session
@nox.parametrize("torch", VERSIONS)
def upgrade(session: nox.Session, torch: str) -> None:
    session.install(f"torch=={torch}", "numpy", "sympy", "mpmath", "hypothesis", "rich", "jinja2", "matplotlib", "pytest", "jsonschema")
    session.install("--no-deps", "-e", ".")
    session.run("pytest", "-q", "-x", success_codes=[0, 1])
    session.run("byhand", "baseline", "compare", BASELINE, "--markdown", f"docs/torch-2.13.0-vs-{torch}.md", success_codes=[0, 1])
