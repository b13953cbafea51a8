# One image for every rightsledger process: api, projections, relay and workers.
FROM python:3.11-slim
WORKDIR /app
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-cache-dir . \
    && useradd --system --uid 10001 rightsledger
USER rightsledger
EXPOSE 8000
ENTRYPOINT ["rightsledger"]
CMD ["serve", "--host", "0.0.0.0"]
