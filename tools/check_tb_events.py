#!/usr/bin/env python3
"""Reads a TensorBoard event file with TensorBoard itself and prints its scalars as JSON.

The proof that qlora's C++ event writer (src/train/tb_event_writer.cpp) produces files TensorBoard
reads. Run with the pinned venv (tensorboard==2.21.0 from tools/requirements.txt):

    /root/.cache/qlora/venv/bin/python tools/check_tb_events.py EVENT_FILE [-o OUT.json]

Three checks, any failure exits non-zero:
1. Strict framing: every record is read with TensorBoard's own TFRecord reader
   (tensorboard.compat.tensorflow_stub PyRecordReader), which verifies the masked CRC-32C of each
   length header and payload; a CRC mismatch or a torn record is an error here (TensorBoard's loader
   would only log it and stop early).
2. Canonical protobuf: each record parses as tensorboard.compat.proto Event, and serialising that
   Event again gives back exactly the bytes in the file (so the hand-written encoding is the one the
   protobuf library itself produces), with no unknown fields.
3. The scalars TensorBoard shows: event_accumulator.EventAccumulator loads the file and every
   scalar it reports is printed, per tag, with its wall time, step, value and the float32 bits of
   the value (non-finite values print as null; the bits still pin them).

Fixture: tests/fixtures/train/ holds an event file written by the C++ test and this script's output
for it (tb_expected.json). To regenerate both:

    QLORA_TB_FIXTURE_OUT=tests/fixtures/train build-train/tests/test_train \
        --gtest_filter='MetricsWriter.EventFileMatchesFixture'
    /root/.cache/qlora/venv/bin/python tools/check_tb_events.py \
        tests/fixtures/train/events.out.tfevents.1767225600.fixture-host.4242.0 \
        -o tests/fixtures/train/tb_expected.json
"""

import argparse
import json
import math
import os
import struct
import sys

import tensorboard
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.compat.proto import event_pb2
from tensorboard.compat.tensorflow_stub import errors, pywrap_tensorflow


def read_records_strictly(path):
    """All record payloads of the file; raises on a CRC mismatch or a torn record."""
    reader = pywrap_tensorflow.PyRecordReader_New(path, 0, None, None)
    records = []
    while True:
        try:
            reader.GetNext()
        except errors.OutOfRangeError:
            return records
        records.append(reader.record())


def check_canonical(records):
    """Parses each record as an Event and checks protobuf re-serialises it to the same bytes."""
    events = []
    for index, raw in enumerate(records):
        event = event_pb2.Event.FromString(raw)
        again = event.SerializeToString(deterministic=True)
        if again != raw:
            raise SystemExit(f"record {index}: protobuf re-serialises to {again.hex()}, file has {raw.hex()}")
        events.append(event)
    return events


def float_bits(value):
    return "0x%08x" % struct.unpack("<I", struct.pack("<f", value))[0]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("event_file")
    parser.add_argument("-o", "--output", help="write the JSON here instead of stdout")
    args = parser.parse_args()
    if not os.path.isfile(args.event_file):
        raise SystemExit(f"{args.event_file}: no such file")

    records = read_records_strictly(args.event_file)
    events = check_canonical(records)
    if not events or events[0].file_version != "brain.Event:2":
        raise SystemExit(f"{args.event_file}: first event is not file_version brain.Event:2")

    # size_guidance 0 keeps every scalar (the default samples 10,000 per tag).
    accumulator = event_accumulator.EventAccumulator(
        args.event_file, size_guidance={event_accumulator.SCALARS: 0}
    )
    accumulator.Reload()
    scalars = {}
    for tag in sorted(accumulator.Tags()["scalars"]):
        scalars[tag] = [
            {
                "step": s.step,
                "wall_time": s.wall_time,
                "value": s.value if math.isfinite(s.value) else None,
                "value_bits": float_bits(s.value),
            }
            for s in accumulator.Scalars(tag)
        ]
    scalar_events = sum(len(event.summary.value) for event in events)
    shown = sum(len(v) for v in scalars.values())
    if shown != scalar_events:
        raise SystemExit(f"EventAccumulator shows {shown} scalars, the file holds {scalar_events}")

    result = {
        "reader": f"tensorboard {tensorboard.__version__} event_accumulator.EventAccumulator",
        "file_version": events[0].file_version,
        "file_version_wall_time": events[0].wall_time,
        "records": len(records),
        "scalars": scalars,
    }
    text = json.dumps(result, indent=1) + "\n"
    if args.output:
        with open(args.output, "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
