"""Tiny on-disk fixtures of the WILDS, Spawrious and SVIRO layouts (fake metadata, random
images), for the dataset and download tests."""

import csv
import os

from tests.fixtures_data import write_image

FMOW_COUNTRIES = [("KEN", "Africa"), ("USA", "Americas"), ("AUS", "Oceania"),
                  ("IND", "Asia"), ("FRA", "Europe")]


def _write_csv(path, header, rows):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def make_camelyon(root, n_per_hospital=3):
    """``camelyon17_v1.0``: metadata.csv (leading index column) and the patches."""
    folder = os.path.join(root, "camelyon17_v1.0")
    rows = []
    for center in range(5):
        for k in range(n_per_hospital):
            patient, node, x, y = 4 + 10 * center, k % 2, 100 + k, 200 + k
            rows.append([len(rows), patient, node, x, y, (center + k) % 2, center * 2 + k % 2,
                         center, k % 2])
            write_image(os.path.join(
                folder, "patches", f"patient_{patient:03d}_node_{node}",
                f"patch_patient_{patient:03d}_node_{node}_x_{x}_y_{y}.png"), len(rows), 12)
    _write_csv(os.path.join(folder, "metadata.csv"),
               ["", "patient", "node", "x_coord", "y_coord", "tumor", "slide", "center",
                "split"], rows)
    open(os.path.join(folder, "RELEASE_v1.0.txt"), "w").close()
    return folder


def make_fmow(root):
    """``fmow_v1.1``: 6 regions (5 mapped countries + one unmapped = Other), seq rows."""
    folder = os.path.join(root, "fmow_v1.1")
    _write_csv(os.path.join(folder, "country_code_mapping.csv"), ["name", "alpha-3", "region"],
               [[f"country {c}", c, r] for c, r in FMOW_COUNTRIES])
    plan = ["USA", "KEN", "ZZZ", "USA", "AUS", "IND", "FRA", "KEN", "ZZZ", "FRA", "USA"]
    categories = ["airport", "zoo", "dam", "airport", "park", "zoo", "dam", "park", "zoo",
                  "airport", "dam"]
    rows = []
    for i, (country, category) in enumerate(zip(plan, categories)):
        split = "seq" if i == 3 else ("train" if i % 2 else "val")
        rows.append([split, f"img_{i}", country, category])
        write_image(os.path.join(folder, "images", f"rgb_img_{i}.png"), i, 12)
    _write_csv(os.path.join(folder, "rgb_metadata.csv"),
               ["split", "img_filename", "country_code", "category"], rows)
    return folder


def make_rxrx1(root):
    """``rxrx1_v1.0``: two cell types, two experiments, sites 1 and 2."""
    folder = os.path.join(root, "rxrx1_v1.0")
    rows = []
    for cell, experiment in (("HUVEC", "HUVEC-01"), ("HEPG2", "HEPG2-02"), ("HUVEC", "HUVEC-03")):
        for plate, well, site, sirna in ((1, "B02", 1, 5), (2, "C03", 2, 1138), (1, "D04", 2, 7)):
            rows.append([f"{experiment}_{plate}_{well}_{site}", cell, "train", experiment,
                         plate, well, site, "treatment", f"s{sirna}", sirna])
            write_image(os.path.join(folder, "images", experiment, f"Plate{plate}",
                                     f"{well}_s{site}.png"), len(rows), 12)
    _write_csv(os.path.join(folder, "metadata.csv"),
               ["site_id", "cell_type", "dataset", "experiment", "plate", "well", "site",
                "well_type", "sirna", "sirna_id"], rows)
    return folder


def make_iwildcam(root):
    """``iwildcam_v2.0``: three camera traps (remapped ids 0, 2, 10), labels up to 181."""
    folder = os.path.join(root, "iwildcam_v2.0")
    rows = []
    for i, (location, y) in enumerate([(10, 0), (2, 181), (0, 3), (10, 3), (2, 0), (0, 181),
                                       (10, 1)]):
        filename = f"{i:04x}abcd.jpg"
        rows.append(["train", location, 500 + location, y, filename])
        write_image(os.path.join(folder, "train", filename), i, 12)
    _write_csv(os.path.join(folder, "metadata.csv"),
               ["split", "location_remapped", "location", "y", "filename"], rows)
    return folder


SPAWRIOUS_LOCATIONS = ("beach", "desert", "dirt", "jungle", "mountain", "snow")
SPAWRIOUS_BREEDS = ("bulldog", "corgi", "dachshund", "labrador")


def make_spawrious(root, n=4):
    """``spawrious224/{0,1}/<location>/<breed>/<k>.png``, ``n`` images per folder."""
    folder = os.path.join(root, "spawrious224")
    for c, combo in enumerate(("0", "1")):
        for l, location in enumerate(SPAWRIOUS_LOCATIONS):
            for b, breed in enumerate(SPAWRIOUS_BREEDS):
                for k in range(n):
                    write_image(os.path.join(folder, combo, location, breed, f"{k:02d}.png"),
                                1000 * c + 100 * l + 10 * b + k, 12)
    return folder
