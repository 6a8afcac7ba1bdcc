"""How NAL-unit formats (H.264 RFC 6184, H.265 RFC 7798) fill payloads: small NAL units share an
aggregation packet, a NAL unit that fits goes alone, a larger one is fragmented."""

from __future__ import annotations

from collections.abc import Callable, Sequence


def pack_nal_units(
    nals: Sequence[bytes],
    limit: int,
    aggregate_header: int,
    aggregate: Callable[[list[bytes]], list[bytes]],
    fragment: Callable[[bytes, int], list[bytes]],
) -> list[bytes]:
    """Payloads for ``nals`` in order, none over ``limit`` bytes.

    ``aggregate`` turns a group into one aggregation packet (or a single NAL unit packet for a
    group of one); each aggregated unit costs a 16-bit size field after the packet's header.
    """
    payloads: list[bytes] = []
    group: list[bytes] = []
    group_size = aggregate_header
    for nal in nals:
        if len(nal) > limit:
            payloads.extend(aggregate(group))
            group, group_size = [], aggregate_header
            payloads.extend(fragment(nal, limit))
        elif group and group_size + 2 + len(nal) <= limit:
            group.append(nal)
            group_size += 2 + len(nal)
        else:
            payloads.extend(aggregate(group))
            group, group_size = [nal], aggregate_header + 2 + len(nal)
    payloads.extend(aggregate(group))
    return payloads
