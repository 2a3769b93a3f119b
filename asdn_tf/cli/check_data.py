"""Checks image folders before a long run: counts, modes, sizes, small and unreadable images.

    python -m asdn_tf.check_data data/DIV2K/DIV2K_train_HR data/Set5 [--patch_size=96]

Every image is decoded exactly as training and evaluation read it (`asdn_tf.io.image_io`), so a
truncated or mislabelled file shows up here rather than hours into a run. Stops before any
work when a folder is missing; exits non-zero when one holds no images or unreadable files.

Example:
    >>> report = inspect_folder("data/Set14", patch_size=96)
    >>> report.count, dict(report.modes)
    (14, {'RGB': 13, 'L': 1})
"""

import collections
import concurrent.futures
import dataclasses
import os
import pathlib
import sys

from absl import app, flags
from PIL import Image

from asdn_tf.data import data_folders
from asdn_tf.io import errors, image_io
from asdn_tf.data.config import DataConfig

# The largest HR patch training cuts: the default LR patch at the top level, ×2 (96 pixels).
DEFAULT_PATCH_SIZE = 2 * DataConfig().patch_size


@dataclasses.dataclass
class FolderReport:
    """What `inspect_folder` found. Sizes are (name, width, height) after EXIF rotation."""

    path: pathlib.Path
    patch_size: int
    found: bool = True
    modes: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    sizes: list = dataclasses.field(default_factory=list)
    unreadable: list = dataclasses.field(default_factory=list)

    @property
    def count(self):
        return len(self.sizes)

    @property
    def small(self):
        return [size for size in self.sizes if min(size[1:]) < self.patch_size]

    def problem(self):
        """Why the folder is not usable, or None."""
        if not self.found:
            return "not found"
        if self.unreadable:
            return f"{len(self.unreadable)} unreadable file(s)"
        if not self.sizes:
            return "no images"
        return None


def _inspect_image(path):
    """(mode in the file, width, height); raises ValueError naming an unreadable file."""
    array = image_io.read_image(path)
    with Image.open(path) as image:
        mode = image.mode
    return mode, array.shape[1], array.shape[0]


def inspect_folder(path, patch_size=DEFAULT_PATCH_SIZE):
    """Decodes every image under `path` (recursively) and returns a `FolderReport`."""
    report = FolderReport(pathlib.Path(path), patch_size)
    if not report.path.is_dir():
        report.found = False
        return report
    paths = image_io.list_images(report.path)
    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        for file, future in zip(paths, [pool.submit(_inspect_image, p) for p in paths]):
            name = str(file.relative_to(report.path))
            try:
                mode, width, height = future.result()
            except ValueError as error:
                reason = str(error).removeprefix(f"cannot read image {file}: ")
                report.unreadable.append((name, reason))
                continue
            report.modes[mode] += 1
            report.sizes.append((name, width, height))
    return report


def format_report(report):
    """A few indented lines per folder."""
    if not report.found:
        return f"{report.path}: not found"
    lines = [f"{report.path}: {report.count} image{'' if report.count == 1 else 's'}"]
    if report.sizes:
        lines.append("  modes: " + ", ".join(f"{mode} {count}"
                                             for mode, count in report.modes.most_common()))
        by_area = sorted(report.sizes, key=lambda size: (size[1] * size[2], size[0]))
        smallest, median, largest = by_area[0], by_area[(len(by_area) - 1) // 2], by_area[-1]
        lines.append(f"  sizes (W×H, by pixel count): min {smallest[1]}×{smallest[2]} "
                     f"({smallest[0]}), median {median[1]}×{median[2]}, "
                     f"max {largest[1]}×{largest[2]} ({largest[0]})")
        small = report.small
        listed = ", ".join(f"{name} ({width}×{height})" for name, width, height in small[:10])
        more = f", and {len(small) - 10} more" if len(small) > 10 else ""
        lines.append(f"  smaller than {report.patch_size} px: "
                     + (f"{len(small)}: {listed}{more}" if small else "none"))
    lines.append("  unreadable: " + (", ".join(f"{name} ({reason})"
                                               for name, reason in report.unreadable)
                                     if report.unreadable else "none"))
    return "\n".join(lines)


def main(argv):
    paths = argv[1:]
    if not paths:
        sys.exit("check_data: give one or more folders: python -m asdn_tf.check_data PATH [PATH...]")
    patch_size = flags.FLAGS.patch_size
    if patch_size < 1:
        sys.exit(f"check_data: --patch_size must be a positive integer, got {patch_size}")
    missing = [path for path in paths if not pathlib.Path(path).is_dir()]
    if missing:
        others = f" (also missing: {', '.join(missing[1:])})" if missing[1:] else ""
        sys.exit(f"check_data: {data_folders.missing_message(missing[0])}{others}")
    failed = []
    for path in paths:
        report = inspect_folder(path, patch_size)
        print(format_report(report), flush=True)
        if report.problem():
            failed.append(f"{report.path} ({report.problem()})")
    if failed:
        sys.exit(f"check_data: {len(failed)} of {len(paths)} folder(s) not usable: "
                 + "; ".join(failed))


if __name__ == "__main__":
    # Flags are defined here, not at import, so importing the library defines none.
    flags.DEFINE_integer("patch_size", DEFAULT_PATCH_SIZE,
                         "Report images whose shorter side is below this many pixels.")
    app.run(main, flags_parser=errors.one_line_flags_parser("check_data"))
