# Jupyter for the data scientist, with fraudstream (and so `from ksql import KSQLAPI`) installed.
#   docker build -f docker/jupyter.Dockerfile -t fraudstream-jupyter:0.1.0 .
# Python 3.11, as fraudstream requires.
FROM quay.io/jupyter/scipy-notebook:python-3.11.11

# 1000:100 is the image's jovyan:users.
COPY --chown=1000:100 . /tmp/fraudstream
RUN pip install --no-cache-dir /tmp/fraudstream && rm -rf /tmp/fraudstream

WORKDIR /home/jovyan/notebooks
