# One image for every npid service (bankd, trainer, loader, evald). Debian 12, as CI.
FROM debian:12
ENV DEBIAN_FRONTEND=noninteractive
COPY deps/build.txt /tmp/deps-build.txt
RUN apt-get update \
    && apt-get install -y --no-install-recommends $(sed 's/#.*//' /tmp/deps-build.txt) \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . /src
# ARCH= builds for any x86-64-v2 host (the image may run elsewhere than where it was built).
# The hot kernels do not depend on it: they are built for AVX-512 and AVX2 as well and chosen
# from cpuid at start-up, so this image trains as fast as a -march=native build
# (make bench ONLY=dispatch compares the two).
ARG ARCH=-march=x86-64-v2
RUN make clean && make -j"$(nproc)" ARCH="$ARCH" && make install PREFIX=/usr/local \
    && install -m 755 scripts/npid scripts/npid-plot scripts/npid-baselines scripts/npid-keys \
       /usr/local/bin/
WORKDIR /run/npid
CMD ["npid-trainer", "--help"]
