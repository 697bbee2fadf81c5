#!/usr/bin/python3
"""Calls grpc.health.v1.Health/Check on each Berth socket given on the command line, from Python
(Debian's python3-grpcio), with the messages encoded by hand from the public health.proto:
HealthCheckRequest{string service = 1}, HealthCheckResponse{ServingStatus status = 1}.
Prints one line per target: "<target> <STATUS>"."""
import sys
import grpc

NAMES = {0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}


def encode_request(service: str) -> bytes:
    raw = service.encode()
    return (b"\x0a" + bytes([len(raw)]) + raw) if raw else b""


def decode_status(data: bytes) -> int:
    # field 1, wire type 0 (varint); an absent field means 0 (UNKNOWN)
    return data[1] if len(data) >= 2 and data[0] == 0x08 else 0


def main() -> int:
    for target in sys.argv[1:]:
        with grpc.insecure_channel(target) as ch:
            check = ch.unary_unary("/grpc.health.v1.Health/Check", request_serializer=encode_request, response_deserializer=decode_status)
            print(target, NAMES.get(check("", timeout=5), "?"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
