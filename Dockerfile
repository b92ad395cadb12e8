# caddy-ilp in a container: Caddy built with xcaddy and this plugin (the
# way ./xcaddy.sh builds it), on a small non-root runtime image. The
# operator brings the Caddyfile and the environment:
#
#   docker build -t caddy-ilp .
#   docker run --env-file edge.env -p 443:443 -p 80:80 \
#     -v "$PWD/Caddyfile.example:/etc/caddy/Caddyfile:ro" \
#     -v caddy-data:/data caddy-ilp
#
# Go must be the version go.mod asks for (integration/deploy_test.go
# checks the tag below against it).
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY . .
RUN OUTPUT=/out/caddy ./xcaddy.sh build

# distroless: no shell, no package manager; uid 65532 ("nonroot").
FROM gcr.io/distroless/base-debian12:nonroot
COPY --from=build /out/caddy /usr/bin/caddy
# Caddy's certificates and ACME state (/data) and its autosaved config
# (/config) must outlive the container: mount a volume on /data.
ENV XDG_DATA_HOME=/data XDG_CONFIG_HOME=/config
VOLUME ["/data"]
USER nonroot
# 443 and 80: the public site and its HTTP->HTTPS redirect and ACME
# challenge. Docker lets a non-root process bind them inside the
# container (net.ipv4.ip_unprivileged_port_start is 0 there).
EXPOSE 443 80
ENTRYPOINT ["/usr/bin/caddy"]
CMD ["run", "--config", "/etc/caddy/Caddyfile", "--adapter", "caddyfile"]
