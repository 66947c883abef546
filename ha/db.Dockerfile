# One database host of the HA deployment: PostgreSQL 15, Patroni and an etcd member, all
# Debian bookworm packages (ha/README.md). Built with the repository as context:
#   docker build -f ha/db.Dockerfile .
FROM debian:bookworm-slim
RUN mkdir -p /etc/postgresql-common \
    && echo 'create_main_cluster = false' > /etc/postgresql-common/createcluster.conf \
    && apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        postgresql-15 patroni python3-etcd etcd-server etcd-client curl ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /var/lib/postgresql/data /var/lib/etcd /var/run/postgresql /etc/rinha \
    && chown -R postgres:postgres /var/lib/postgresql /var/lib/etcd /var/run/postgresql
ENV PATH=/usr/lib/postgresql/15/bin:$PATH
COPY db/init.sql db/postgresql.conf /etc/rinha/
COPY ha/patroni.yml /etc/rinha/patroni.yml
COPY ha/db-host.sh /usr/local/bin/db-host
COPY ha/post-bootstrap.sh /usr/local/bin/post-bootstrap
USER postgres
EXPOSE 5432 8008 2379 2380
STOPSIGNAL SIGTERM
ENTRYPOINT ["db-host"]
