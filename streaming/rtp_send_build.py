"""Builds the native send path, ``streaming/_rtp_send*.so``, next to its source.

Run by the install step (``make install``: ``python -m streaming.rtp_send_build``);
needs a C compiler and Python's headers (``scripts/install-system-deps --runtime``).
The declarations below are the module's whole boundary, as Python sees it.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent

DECLARATIONS = """
typedef int (*zx_protect_fn)(void *session, void *packet, int *length);

typedef struct {
    int fd;                      /* the viewer's UDP socket (non-blocking) */
    int gso;                     /* 1: may use UDP_SEGMENT; cleared where the kernel refuses */
    unsigned char address[28];   /* sockaddr_in / sockaddr_in6 of the viewer */
    unsigned int address_length;
    void *session;               /* srtp_t of the viewer's DTLS transport */
    uint32_t ssrc;
    uint16_t sequence;           /* of the next packet */
    uint8_t first_byte;          /* 0x80, or 0x90 with header extensions */
    uint8_t payload_type;
    uint8_t extensions[64];      /* the RFC 8285 block, abs-send-time filled per frame */
    int extensions_length;
    int abs_send_time_at;        /* offset of its 3 bytes in extensions, or -1 */
    /* what the last zx_send_frame did */
    int sent;                    /* packets the kernel took */
    int consumed;                /* sequence numbers used (protected) */
    long long octets;            /* payload octets of the packets sent */
    uint64_t ntp;                /* when, as an NTP timestamp */
    int error;                   /* errno of a failed send, or -(srtp status) */
    int status;                  /* ZX_SENT, ZX_FULL or ZX_ERROR */
    /* kept across frames */
    uint32_t origin;             /* added to every frame's timestamp (the viewer's timeline) */
    uint32_t last_timestamp;     /* RTP timestamp of the last frame (its sender report's) */
    unsigned long long packets_total;
    unsigned long long octets_total;
    unsigned long long frames_total; /* frames sent whole */
    /* the last 128 frames: which frame, its first sequence number, packets, timestamp */
    uint32_t history_frame[128];
    uint16_t history_first[128];
    uint16_t history_count[128];
    uint32_t history_timestamp[128];
    int history_next;
    uint8_t cname[64];           /* the RTCP CNAME of its sender reports */
    int cname_length;
} zx_viewer;

typedef struct {
    const unsigned char *data;   /* the frame's RTP payloads, one after the other */
    const int *offsets;          /* count + 1 offsets into data */
    int count;
    int largest;                 /* the longest payload */
} zx_frame;

#define ZX_SENT 0
#define ZX_FULL 1
#define ZX_ERROR 2

/* One viewer: the frame at timestamp + viewer->origin; returns ZX_SENT, ZX_FULL, ZX_ERROR. */
int zx_send_frame(zx_viewer *viewer, zx_protect_fn protect, const zx_frame *frame,
                  uint32_t timestamp, uint32_t frame_id);
/* Every viewer of a group, in order; the indexes of those not ZX_SENT go to
 * failed (count of them returned), each viewer's status tells which. */
int zx_send_group(zx_viewer **viewers, int count, zx_protect_fn protect,
                  const zx_frame *frame, uint32_t timestamp, uint32_t frame_id,
                  int *failed);
/* A sender report (with the CNAME's SDES) to each viewer, protected with
 * protect_rtcp (srtp_protect_rtcp); the indexes of those that failed go to
 * failed, their count is returned. */
int zx_send_reports(zx_viewer **viewers, int count, zx_protect_fn protect_rtcp, int *failed);
/* Which frame (and packet of it) carried a sequence number still remembered: 1, else 0. */
int zx_find_packet(const zx_viewer *viewer, uint16_t sequence, uint32_t *frame_id,
                   int *index, uint32_t *timestamp);
uint64_t zx_ntp_now(void);
"""

ffibuilder = FFI()
ffibuilder.cdef(DECLARATIONS)
ffibuilder.set_source(
    "streaming._rtp_send",
    (HERE / "rtp_send.c").read_text(),
    extra_compile_args=["-O2", "-Wall", "-Werror"],
)


def build() -> Path:
    """Compile in a scratch folder; the module lands in ``streaming/``."""
    with tempfile.TemporaryDirectory(prefix="zhixing-build-") as tmp:
        built = Path(ffibuilder.compile(tmpdir=tmp, verbose=False))
        target = HERE / built.name
        # A new file renamed over the old: a running server keeps the module
        # it mapped (rewriting that file in place could crash it).
        fresh = target.with_name(f".{target.name}.new")
        fresh.write_bytes(built.read_bytes())
        os.replace(fresh, target)
    return target


if __name__ == "__main__":
    print(f"built {build()}", file=sys.stderr)
