# The image a Flyte cluster runs: CUDA runtime, Python 3.12, the project and its pinned stack.
# Build: docker build -t cinesync:latest .   Register: pyflyte register --image cinesync:latest workflows/
FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    GX_ANALYTICS_ENABLED=false \
    HF_HUB_OFFLINE=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

RUN apt-get update \
 && apt-get install -y --no-install-recommends python3.12 python3.12-venv python3-pip ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && python3.12 -m venv /opt/venv

WORKDIR /root
# Dependencies first (cached layer); torch==2.13.0 from PyPI is the CUDA build on linux x86-64.
COPY pyproject.toml constraints.txt README.md ./
RUN mkdir -p models pipeline serving tasks workflows data_contracts \
 && pip install --no-cache-dir -c constraints.txt -e . \
 && pip uninstall -y cinesync
COPY models ./models
COPY pipeline ./pipeline
COPY serving ./serving
COPY tasks ./tasks
COPY workflows ./workflows
COPY data_contracts ./data_contracts
RUN pip install --no-cache-dir --no-deps -e .
