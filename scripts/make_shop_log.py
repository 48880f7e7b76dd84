"""Writes a shop-like behaviour log: customers' sessions of clicks and purchases, ISO times.

The data a shop brings, in the layout it brings it: `events.csv` (customer,
sku, event, ISO 8601 time) and `items.jsonl` (sku, title, brand, category,
description). How it is drawn (seeded, so the same flags write the same files):

- SKUs belong to categories, each with a few brands; within a category they
  form product lines (neighbouring SKUs of one line are variants and
  accessories of each other), and popularity is Zipf-like.
- A customer has two or three favourite categories and a number of sessions
  (a geometric count, so a few customers have long logs); a session starts in
  one category, and each further click is another SKU of the last one's
  product line (30%), a popular SKU of the category (30%) or anything the
  shop sells (40%).
- A session ends in a purchase of one of its clicked SKUs with probability
  `--purchase_rate`; a purchase makes the next session go to the category's
  complement (printer -> ink, camera -> memory cards) more often than not.
- Clicks are seconds to minutes apart; sessions hours to weeks apart.

So the next behaviour is predictable from the last few (product lines,
complements) and from the text (category, brand, line words), and purchases
are a small share of events, as in real shops (about 10% here).

Usage:
  .venv/bin/python scripts/make_shop_log.py --output_dir=/tmp/shop
  .venv/bin/python -m tfrec.train --source=table:interactions=/tmp/shop/events.csv,items=/tmp/shop/items.jsonl \\
      --user_col=customer --item_col=sku --event_col=event --time_col=time --time_format=iso \\
      --text_cols=title,brand,category,description --run_dir=runs/shop
"""

import csv
import datetime
import json
import os
import sys

import numpy as np
from absl import app, flags

CATEGORIES = {
    "printers": ("inks", "laser inkjet duplex wireless colour monochrome scanner tray"),
    "inks": ("paper", "cartridge toner black cyan magenta yellow refill high-yield"),
    "paper": ("printers", "copy photo glossy matte ream letter a4 cardstock"),
    "cameras": ("memory cards", "mirrorless zoom lens sensor megapixel stabilised compact"),
    "memory cards": ("cameras", "sd microsd gigabyte uhs speed class adapter"),
    "laptops": ("laptop bags", "ultrabook processor ram ssd display battery keyboard"),
    "laptop bags": ("mice", "sleeve backpack padded shoulder water-resistant pocket zip"),
    "mice": ("keyboards", "wireless ergonomic optical dpi scroll bluetooth receiver"),
    "keyboards": ("mice", "mechanical membrane backlit keys switches wrist rest"),
    "headphones": ("phone cases", "over-ear in-ear noise-cancelling bass microphone wireless"),
    "phone cases": ("chargers", "silicone leather rugged clear wallet magnetic slim"),
    "chargers": ("cables", "usb-c fast wall car wireless watt adapter"),
    "cables": ("chargers", "hdmi usb braided metre lightning displayport adapter"),
    "coffee machines": ("coffee beans", "espresso grinder milk frother capsule pressure bar"),
    "coffee beans": ("mugs", "arabica roast dark medium single-origin whole bean"),
    "mugs": ("coffee beans", "ceramic travel insulated glass handle dishwasher"),
    "desk lamps": ("notebooks", "led dimmable arm clamp warm daylight usb"),
    "notebooks": ("pens", "lined dotted hardcover spiral a5 journal"),
    "pens": ("notebooks", "gel ballpoint fountain fine tip ink refill"),
    "backpacks": ("water bottles", "hiking daypack laptop compartment waterproof straps"),
}
BRANDS = ("Norden", "Acme", "Veritas", "Kestrel", "Lumen", "Orbit", "Pioneer", "Solace", "Tundra", "Zephyr",
          "Argo", "Brightline", "Cobalt", "Delta", "Everpeak")


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """Defines the script's flags in `flag_values`."""
    flags.DEFINE_string("output_dir", None, "Directory to write events.csv and items.jsonl into.",
                        flag_values=flag_values)
    flags.DEFINE_integer("customers", 300, "Number of customers.", lower_bound=1, flag_values=flag_values)
    flags.DEFINE_integer("skus", 400, "Number of SKUs (at least one per category).",
                         lower_bound=len(CATEGORIES), flag_values=flag_values)
    flags.DEFINE_float("sessions", 5.0, "Mean number of sessions per customer.", lower_bound=1.0,
                       flag_values=flag_values)
    flags.DEFINE_float("purchase_rate", 0.5, "Probability that a session ends in a purchase.",
                       lower_bound=0.0, upper_bound=1.0, flag_values=flag_values)
    flags.DEFINE_integer("seed", 0, "Random seed.", flag_values=flag_values)
    flags.mark_flag_as_required("output_dir", flag_values=flag_values)


def catalogue(skus, rng):
    """(items: list of dicts, category of each SKU, product line of each SKU, popularity weights)."""
    names = list(CATEGORIES)
    category = np.sort(np.arange(skus) % len(names))
    line = np.zeros(skus, np.int64)
    items = []
    for k, name in enumerate(names):
        members = np.flatnonzero(category == k)
        words = CATEGORIES[name][1].split()
        lines = max(1, len(members) // 8)
        line[members] = np.sort(rng.integers(0, lines, len(members))) + 100 * k
        brands = rng.choice(BRANDS, size=3, replace=False)
        for position, sku in enumerate(members):
            brand = brands[line[sku] % 3]
            a, b, c = rng.choice(words, size=3, replace=False)
            series = f"{brand} {words[line[sku] % len(words)].capitalize()} {100 + (line[sku] % 100) * 10}"
            items.append({
                "sku": f"SKU{sku:05d}",
                "title": f"{series} {a} {name[:-1] if name.endswith('s') else name} ({position % 5 + 1})",
                "brand": brand,
                "category": f"Electronics & Office > {name.title()}",
                "description": f"{a.capitalize()} {b} {name} from the {series} line, {c}.",
            })
    popularity = 1.0 / (1.0 + rng.permutation(skus)) ** 0.8
    return items, category, line, popularity


def sessions_of(customer_rng, category, line, popularity, sessions, purchase_rate):
    """One customer's behaviours: list of (sku index, event, seconds since the customer's first)."""
    names = list(CATEGORIES)
    favourites = customer_rng.choice(len(names), size=customer_rng.integers(2, 4), replace=False)
    count = customer_rng.geometric(1.0 / sessions)
    events, now, next_category = [], 0.0, None
    for _ in range(count):
        k = next_category if next_category is not None else customer_rng.choice(favourites)
        members = np.flatnonzero(category == k)
        weights = popularity[members] / popularity[members].sum()
        current = customer_rng.choice(members, p=weights)
        clicked = [current]
        for _ in range(customer_rng.integers(0, 8)):
            draw = customer_rng.random()
            if draw < 0.3:  # another variant or accessory of the same product line
                same_line = members[(line[members] == line[current]) & (members != current)]
                current = customer_rng.choice(same_line) if same_line.size else current
            elif draw < 0.6:  # a popular SKU of the category
                current = customer_rng.choice(members, p=weights)
            else:  # anything the shop sells
                current = customer_rng.choice(len(category), p=popularity / popularity.sum())
            clicked.append(current)
        for sku in clicked:
            events.append((sku, "click", now))
            now += customer_rng.exponential(40.0) + 2.0
        next_category = None
        if customer_rng.random() < purchase_rate:
            events.append((customer_rng.choice(clicked), "purchase", now))
            complement = CATEGORIES[names[k]][0]
            if complement in names and customer_rng.random() < 0.6:
                next_category = names.index(complement)
        now += customer_rng.exponential(5 * 86400.0) + 3600.0
    return events


def write(output_dir, customers, skus, sessions, purchase_rate, seed):
    """Writes `events.csv` and `items.jsonl` into `output_dir` (each written whole, then renamed)."""
    rng = np.random.default_rng(seed)
    items, category, line, popularity = catalogue(skus, rng)
    start = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)
    rows = []
    for customer in range(customers):
        customer_rng = np.random.default_rng([seed, customer])
        offset = customer_rng.uniform(0, 300 * 86400.0)
        for sku, event, seconds in sessions_of(customer_rng, category, line, popularity, sessions, purchase_rate):
            time = start + datetime.timedelta(seconds=round(offset + seconds))
            rows.append((f"C{customer:05d}", items[sku]["sku"], event, time.isoformat().replace("+00:00", "Z")))
    os.makedirs(output_dir, exist_ok=True)
    events_path, items_path = os.path.join(output_dir, "events.csv"), os.path.join(output_dir, "items.jsonl")
    with open(events_path + ".tmp", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["customer", "sku", "event", "time"])
        writer.writerows(rows)
    with open(items_path + ".tmp", "w", encoding="utf-8") as f:
        f.writelines(json.dumps(item) + "\n" for item in items)
    os.replace(events_path + ".tmp", events_path)
    os.replace(items_path + ".tmp", items_path)
    purchases = sum(row[2] == "purchase" for row in rows)
    return len(rows), purchases


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    f = flags.FLAGS
    events, purchases = write(f.output_dir, f.customers, f.skus, f.sessions, f.purchase_rate, f.seed)
    print(f"{f.output_dir}: {events} events ({purchases} purchases) of {f.customers} customers, {f.skus} SKUs",
          file=sys.stdout)


if __name__ == "__main__":
    define_flags()
    app.run(main)
