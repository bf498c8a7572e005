"""The one in-process pipeline: every way of running CineSync goes through these steps.

    tables -> contracts -> split -> side inputs -> fit -> member scores -> ensemble -> evaluate
                                                                      -> choose (validation only)

Each step is a plain function with typed inputs in ``pipeline.steps``; ``pipeline.run.run``
chains them in one process. The Flyte tasks (``tasks/``) are thin wrappers over the same steps,
``models.api`` is their plain-Python face, and every benchmark calls them and keeps only its
argument parsing and its report. No Flyte and no MLflow here; ``models/`` knows nothing of this
package.
"""
