# The proxy each API host runs in front of the database hosts: HAProxy (Debian's package)
# sending connections to whichever host Patroni's REST API calls primary (ha/haproxy.cfg).
FROM debian:bookworm-slim
RUN apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends haproxy \
    && rm -rf /var/lib/apt/lists/*
COPY ha/haproxy.cfg /etc/haproxy/haproxy.cfg
USER haproxy
EXPOSE 5432
ENTRYPOINT ["haproxy", "-W", "-db", "-f", "/etc/haproxy/haproxy.cfg"]
