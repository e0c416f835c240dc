#!/usr/bin/env python3
"""Writes the labelled DLP corpus next to this script: realistic carriers (JSON, forms,
multipart, CSV, e-mail, logs, source code, Kubernetes manifests) with values that pass
their check digits, plus hard negatives. Each sample gets a `<file>.expect` sidecar (see
README.md). Deterministic (fixed seed): rerun after editing and commit the outputs.

Usage: python3 tests/data/corpus/generate.py   (needs openssl on PATH for the keys)
"""
import base64
import gzip
import json
import os
import random
import shutil
import subprocess
import urllib.parse
import zlib
from collections import Counter

HERE = os.path.dirname(os.path.abspath(__file__))
rng = random.Random(20261126)
SAMPLES = []  # (relative path, bytes, [categories])


def add(path, content, *cats):
    if isinstance(content, str):
        content = content.encode()
    SAMPLES.append((path, content, list(cats) or ["none"]))


# ---------------------------------------------------------------- value generators
def digits(n):
    return "".join(rng.choice("0123456789") for _ in range(n))


def luhn_digit(s):
    tot = 0
    for i, ch in enumerate(reversed(s)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        tot += d
    return str((10 - tot % 10) % 10)


def card(prefix, n):
    s = prefix + digits(n - len(prefix) - 1)
    return s + luhn_digit(s)


def bad_luhn(prefix, n):
    c = card(prefix, n)
    return c[:-1] + str((int(c[-1]) + 3) % 10)


def grouped(c, sep=" "):
    return sep.join(c[i:i + 4] for i in range(0, len(c), 4))


CARD_BRANDS = [("4", 16), ("51", 16), ("55", 16), ("2221", 16), ("2720", 16), ("34", 15), ("37", 15),
               ("6011", 16), ("65", 16), ("3530", 16), ("36", 14), ("62", 16), ("6759", 16)]


def any_card():
    p, n = rng.choice(CARD_BRANDS)
    return card(p, n)


def iban(cc, bban):
    num = "".join(str(int(c, 36)) for c in bban + cc + "00")
    return f"{cc}{98 - int(num) % 97:02d}{bban}"


BBAN = {"CH": lambda: "00" + digits(3) + digits(12), "LI": lambda: "0881" + digits(13),
        "DE": lambda: digits(18), "AT": lambda: digits(16), "FR": lambda: digits(10) + "".join(
            rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ0123456789") for _ in range(11)) + digits(2),
        "IT": lambda: "X" + digits(10) + digits(12), "NL": lambda: "ABNA" + digits(10),
        "ES": lambda: digits(20), "BE": lambda: digits(12), "GB": lambda: "NWBK" + digits(14),
        "LU": lambda: digits(16), "PL": lambda: digits(24)}


def any_iban(cc=None):
    cc = cc or rng.choice(list(BBAN))
    return iban(cc, BBAN[cc]())


def iban_grouped(i):
    return " ".join(i[k:k + 4] for k in range(0, len(i), 4))


def bad_iban():
    i = any_iban("CH")
    return i[:-1] + str((int(i[-1]) + 1) % 10)


def ahv():
    s = "756" + digits(9)
    t = sum(int(c) * (1 if k % 2 == 0 else 3) for k, c in enumerate(s))
    return s + str((10 - t % 10) % 10)


def ahv_dotted(a):
    return f"{a[:3]}.{a[3:7]}.{a[7:11]}.{a[11:]}"


def ssn():
    while True:
        area = rng.randint(1, 899)
        if area == 666:
            continue
        s = f"{area:03d}-{rng.randint(1, 99):02d}-{rng.randint(1, 9999):04d}"
        if s not in ("078-05-1120", "123-45-6789", "219-09-9999"):
            return s


def nino():
    first = rng.choice("ABCEGHJKLMNPRSTWXYZ")
    while True:
        second = rng.choice("ABCEGHJKLMNPRSTWXYZ")
        if first + second not in ("BG", "GB", "KN", "NK", "NT", "TN", "ZZ"):
            break
    return first + second + digits(6) + rng.choice("ABCD")


def steuer_id():
    while True:
        d = [rng.randint(1, 9)] + [rng.randint(0, 9) for _ in range(9)]
        c = Counter(d)
        if max(c.values()) != 2 or sum(1 for v in c.values() if v >= 2) != 1:
            continue
        p = 10
        for x in d:
            s = (x + p) % 10 or 10
            p = (s * 2) % 11
        ch = 11 - p
        return "".join(map(str, d)) + str(0 if ch == 10 else ch)


FIRST = ["Anna", "Luca", "Sofia", "Noah", "Mia", "Elias", "Lea", "Leon", "Laura", "Jonas", "Sarah", "David",
         "Julia", "Marco", "Nina", "Tim", "Chiara", "Fabian", "Emma", "Samuel", "Lara", "Nico", "Alina", "Jan"]
LAST = ["Müller", "Meier", "Schmid", "Keller", "Weber", "Huber", "Schneider", "Meyer", "Steiner", "Fischer",
        "Gerber", "Brunner", "Baumann", "Frei", "Zimmermann", "Moser", "Widmer", "Wyss", "Graf", "Roth"]
DOMAINS = ["bluewin.ch", "gmx.ch", "sunrise.ch", "hispeed.ch", "gmail.com", "outlook.com", "proton.me",
           "hospital-zh.ch", "kantonalbank.ch", "web.de", "t-online.de", "orange.fr", "yahoo.co.uk"]


def ascii_name(s):
    return s.lower().replace("ü", "ue").replace("ö", "oe").replace("ä", "ae")


def person():
    f, l = rng.choice(FIRST), rng.choice(LAST)
    return f, l


def email(f=None, l=None):
    if f is None:
        f, l = person()
    style = rng.randint(0, 3)
    local = [f"{ascii_name(f)}.{ascii_name(l)}", f"{ascii_name(f)[0]}{ascii_name(l)}",
             f"{ascii_name(f)}{rng.randint(1, 99)}", f"{ascii_name(l)}.{ascii_name(f)}"][style]
    return f"{local}@{rng.choice(DOMAINS)}"


def phone_ch_mobile(intl=True):
    n = f"7{rng.choice('6789')} {rng.randint(200, 999)} {digits(2)} {digits(2)}"
    return f"+41 {n}" if intl else f"0{n}"


def phone_ch_zh(intl=True):
    n = f"44 {rng.randint(200, 999)} {digits(2)} {digits(2)}"
    return f"+41 {n}" if intl else f"0{n}"


def phone_us():
    area = rng.choice(["212", "415", "650", "617", "312", "646"])
    return f"+1 {area}-{rng.randint(201, 998)}-{digits(4)}"


def phone_de():
    return f"+49 30 {rng.randint(2000000, 9999999)}"


def phone_uk():
    return f"+44 20 7{digits(3)} {digits(4)}"


def any_phone():
    return rng.choice([phone_ch_mobile, phone_ch_zh, phone_us, phone_de, phone_uk])()


B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def aws_key(prefix="AKIA"):
    while True:
        k = prefix + "".join(rng.choice(B32) for _ in range(16))
        if "EXAMPLE" not in k:
            return k


def aws_secret():
    return "".join(rng.choice(B62 + "/+") for _ in range(40))


def b62(n):
    o = ""
    while n:
        o = B62[n % 62] + o
        n //= 62
    return o.rjust(6, "0")


def gh_token(prefix="ghp_"):
    r = "".join(rng.choice(B62) for _ in range(30))
    return prefix + r + b62(zlib.crc32(r.encode()))


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def jwt(claims, alg="HS256", extra=None):
    header = {"alg": alg, "typ": "JWT"}
    header.update(extra or {})
    sig = bytes(rng.randrange(256) for _ in range(32 if alg.startswith("HS") else 256))
    return ".".join([b64url(json.dumps(header, separators=(",", ":")).encode()),
                     b64url(json.dumps(claims, separators=(",", ":")).encode()), b64url(sig)])


def uuid():
    h = "".join(rng.choice("0123456789abcdef") for _ in range(32))
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{rng.choice('89ab')}{h[17:20]}-{h[20:]}"


def hexs(n):
    return "".join(rng.choice("0123456789abcdef") for _ in range(n))


def ts():
    return f"2026-{rng.randint(1, 11):02d}-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}.{digits(3)}Z"


def pem_key(kind):
    if kind == "ec":
        cmd = ["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout"]
    elif kind == "rsa":
        cmd = ["openssl", "genrsa", "-traditional", "1024"]
    elif kind == "pkcs8":
        cmd = ["openssl", "genpkey", "-algorithm", "ed25519"]
    else:
        raise ValueError(kind)
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def openssh_key():
    tmp = os.path.join("/tmp", f"eg-corpus-ssh-{os.getpid()}")
    if os.path.exists(tmp):
        os.remove(tmp)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "deploy@ci", "-f", tmp], check=True)
    key = open(tmp).read()
    os.remove(tmp)
    os.remove(tmp + ".pub")
    return key


def public_key_pem():
    priv = pem_key("ec")
    return subprocess.run(["openssl", "ec", "-pubout"], input=priv, check=True, capture_output=True, text=True).stdout


def cert_pem():
    out = subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                          "-nodes", "-keyout", "/dev/null", "-subj", "/CN=api.internal", "-days", "30"],
                         check=True, capture_output=True, text=True)
    return out.stdout


def js(o):
    return json.dumps(o, indent=2, ensure_ascii=False) + "\n"


# ---------------------------------------------------------------- occurrence labels
# Every value a generator above makes is remembered with its category, in the form it
# takes in a sample. A sample's sidecar then locates each occurrence of a value of a
# category it lists ("at email 120-139", byte offsets in the sample), for the
# per-occurrence score (--each-match). Values hidden by an encoding the sample adds
# (gzip, base64, \u escapes) are not found as text and stay unlocated: those
# (file, category) pairs are scored per file only.
VALUES = {}  # category -> rendered values


def mark(cat, value):
    VALUES.setdefault(cat, set()).add(value)
    return value


def labelled(cat, fn):
    return lambda *a, **k: mark(cat, fn(*a, **k))


card, grouped = labelled("credit_card", card), labelled("credit_card", grouped)
iban, iban_grouped = labelled("iban", iban), labelled("iban", iban_grouped)
ahv, ahv_dotted = labelled("ahv", ahv), labelled("ahv", ahv_dotted)
ssn, nino, steuer_id = labelled("us_ssn", ssn), labelled("uk_nino", nino), labelled("de_steuer_id", steuer_id)
email = labelled("email", email)
phone_ch_mobile, phone_ch_zh = labelled("phone", phone_ch_mobile), labelled("phone", phone_ch_zh)
phone_us, phone_de, phone_uk = labelled("phone", phone_us), labelled("phone", phone_de), labelled("phone", phone_uk)
aws_key, gh_token, jwt = labelled("aws_access_key", aws_key), labelled("github_token", gh_token), labelled("jwt", jwt)
pem_key, openssh_key = labelled("private_key", pem_key), labelled("private_key", openssh_key)


def renderings(value):
    """The forms a value takes in the carriers here: as is, form-urlencoded, inside a JSON
    string, with CRLF line ends (e-mail)."""
    forms = {value, urllib.parse.quote_plus(value), json.dumps(value)[1:-1],
             json.dumps(value, ensure_ascii=False)[1:-1], value.replace("\n", "\r\n")}
    return [f.encode() for f in forms if f]


def occurrences(content, cats):
    """(start, end, category) of every located value of the listed categories; a span
    inside a longer one (a card's digits inside an IBAN, a tail inside a longer
    address) is part of that one, not an occurrence of its own."""
    found = set()
    for cat in cats:
        for value in VALUES.get(cat.split()[0], ()):
            for form in renderings(value):
                at = content.find(form)
                while at >= 0:
                    found.add((at, at + len(form), cat.split()[0]))
                    at = content.find(form, at + 1)
    spans = sorted(found, key=lambda s: (s[0], -s[1]))
    kept = []
    for s in spans:
        if any(k[0] <= s[0] and s[1] <= k[1] and (k[1] - k[0]) > (s[1] - s[0]) for k in kept):
            continue
        if any(k[:2] == s[:2] for k in kept):
            continue
        kept.append(s)
    return kept


# ---------------------------------------------------------------- JSON API bodies
for i in range(6):
    c = any_card()
    body = {"order_id": f"ORD-2026-{digits(6)}", "amount": {"value": rng.randint(100, 99999), "currency": "CHF"},
            "payment_method": {"type": "card", "card": {"number": c if i % 2 == 0 else grouped(c),
                                                        "exp_month": rng.randint(1, 12), "exp_year": 2028,
                                                        "cvc": digits(3)}},
            "created": ts(), "idempotency_key": uuid()}
    add(f"json/payment_{i}.json", js(body), "credit_card")

for i, cc in enumerate(["CH", "LI", "DE", "FR", "AT", "NL"]):
    ib = any_iban(cc)
    body = {"payout": {"beneficiary": " ".join(person()), "iban": ib if i % 2 else iban_grouped(ib),
                       "bic": rng.choice(["UBSWCHZH80A", "POFICHBEXXX", "DEUTDEFFXXX", "BNPAFRPPXXX"]),
                       "amount": f"{rng.randint(10, 9000)}.{digits(2)}", "reference": f"INV-{digits(8)}"},
            "requested_at": ts()}
    add(f"json/payout_{i}.json", js(body), "iban")

for i in range(3):
    a = ahv()
    f, l = person()
    body = {"insured_person": {"first_name": f, "last_name": l, "ahv_number": ahv_dotted(a) if i != 1 else a,
                               "birth_year": rng.randint(1950, 2004)}, "canton": rng.choice(["ZH", "BE", "VD"]),
            "case_id": uuid()}
    add(f"json/insurance_{i}.json", js(body), "ahv")

for i in range(3):
    body = {"applicant": {"name": " ".join(person()), "ssn": ssn(), "state": rng.choice(["NY", "CA", "MA"])},
            "loan_amount": rng.randint(1000, 90000), "submitted": ts()}
    add(f"json/loan_application_{i}.json", js(body), "us_ssn")

for i in range(2):
    n = nino()
    n = n if i == 0 else mark("uk_nino", f"{n[:2]} {n[2:4]} {n[4:6]} {n[6:8]} {n[8]}")
    add(f"json/uk_payroll_{i}.json", js({"employee": " ".join(person()), "national_insurance_number": n,
                                         "tax_code": "1257L", "period": "2026-10"}), "uk_nino")

for i in range(2):
    add(f"json/de_lohn_{i}.json", js({"mitarbeiter": " ".join(person()), "steuer_id": steuer_id(),
                                      "steuerklasse": rng.randint(1, 5), "monat": "2026-10"}), "de_steuer_id")

for i in range(3):
    add(f"json/newsletter_signup_{i}.json", js({"email": email(), "consent": True, "source": "footer",
                                               "ts": ts()}), "email")

for i in range(3):
    add(f"json/callback_request_{i}.json", js({"name": " ".join(person()), "phone": any_phone(),
                                              "topic": "mortgage", "ts": ts()}), "phone")

for i in range(2):
    f, l = person()
    add(f"json/customer_profile_{i}.json",
        js({"id": uuid(), "name": f"{f} {l}", "email": email(f, l), "mobile": phone_ch_mobile(),
            "iban": any_iban("CH"), "updated_at": ts()}), "email", "phone", "iban")

for i in range(2):
    token = jwt({"sub": uuid(), "iss": "https://login.example-idp.ch", "aud": "api", "exp": 1795000000 + i,
                 "scope": "read write"}, alg=rng.choice(["RS256", "ES256"]), extra={"kid": hexs(16)})
    add(f"json/token_response_{i}.json", js({"access_token": token, "token_type": "Bearer", "expires_in": 3600}),
        "jwt")

e = email()
add("json/escaped_email.json", json.dumps({"contact": e.replace("@", "\\u0040")}).replace("\\\\u0040", "\\u0040") + "\n",
    "email")
key = pem_key("ec")
add("json/escaped_private_key.json", json.dumps({"name": "signing-key", "private_key": key}) + "\n", "private_key")

people = [person() for _ in range(30)]
add("json/customers_export.json",
    js({"customers": [{"id": k + 1, "name": f"{f} {l}", "email": email(f, l), "phone": any_phone()}
                      for k, (f, l) in enumerate(people)], "exported_at": ts()}), "email", "phone")
add("json/mailing_list_small.json", js({"recipients": [email() for _ in range(12)], "campaign": "q4"}), "email")

# ---------------------------------------------------------------- form-urlencoded
def form(d):
    return urllib.parse.urlencode(d) + "\n"


for i in range(3):
    c = any_card()
    add(f"form/checkout_{i}.txt", form({"cardholder": " ".join(person()),
                                        "cc_number": grouped(c) if i != 1 else c, "exp": "12/28",
                                        "cvc": digits(3), "amount": "129.90"}), "credit_card")
for i in range(2):
    add(f"form/signup_{i}.txt", form({"email": email(), "password": "********", "newsletter": "1",
                                      "phone": any_phone()}), "email", "phone")
add("form/sepa_mandate.txt", form({"account_holder": " ".join(person()), "iban": iban_grouped(any_iban("DE")),
                                   "mandate_ref": f"M-{digits(8)}"}), "iban")
add("form/ahv_lookup.txt", form({"ahv": ahv_dotted(ahv()), "lang": "de"}), "ahv")
add("form/contact.txt", form({"name": " ".join(person()), "email": email(), "message": "Bitte um Rückruf"}), "email")
add("form/search_negative.txt", form({"q": "order 2026-11-26 status", "page": "2", "session": uuid(),
                                      "sort": "created_at"}))
add("form/analytics_negative.txt", form({"cid": f"{rng.randint(10**8, 10**9)}.{rng.randint(10**9, 2 * 10**9)}",
                                         "tid": "UA-12345678-1", "dl": "https://shop.example.ch/p/4711",
                                         "ts": "1732612345678"}))

# ---------------------------------------------------------------- multipart
def multipart(parts, boundary=None):
    boundary = boundary or "----WebKitFormBoundary" + "".join(rng.choice(B62) for _ in range(16))
    out = []
    for name, filename, ctype, data in parts:
        disp = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out.append(f"--{boundary}\r\nContent-Disposition: {disp}\r\n" +
                   (f"Content-Type: {ctype}\r\n" if ctype else "") + f"\r\n{data}\r\n")
    return "".join(out) + f"--{boundary}--\r\n"


rows = ["customer_id,first_name,last_name,email,phone"]
for k in range(40):
    f, l = person()
    rows.append(f"{1000 + k},{f},{l},{email(f, l)},{any_phone()}")
add("multipart/upload_customers_csv.txt",
    multipart([("note", None, None, "monthly export"), ("file", "customers.csv", "text/csv", "\n".join(rows))]),
    "email", "phone")
add("multipart/upload_key.txt", multipart([("title", None, None, "deploy key"),
                                           ("file", "id_ed25519", "application/octet-stream", openssh_key())]),
    "private_key")
add("multipart/kyc_form.txt", multipart([("iban", None, None, any_iban("CH")), ("name", None, None, " ".join(person())),
                                         ("passport_scan", "scan.txt", "text/plain", "scan pending")]), "iban")
add("multipart/avatar_negative.txt", multipart([("user_id", None, None, uuid()),
                                                ("avatar", "avatar@2x.png", "image/png", "PNGDATA" + hexs(64))]))
add("multipart/report_negative.txt", multipart([("report", "q3.txt", "text/plain",
                                                 "Revenue grew 4.2% to CHF 12'345'678.90 in Q3 2026.\n"
                                                 "Order volume 1'234'567, build 2026.11.26.1432.\n")]))

# ---------------------------------------------------------------- CSV exports
# bulk_pii counts records of people (min_records, 50): the exports of 26 to 40 people
# here are personal data but no bulk; the 120- and 300-people ones at the end are.
def csv_people(n, cols):
    out = [",".join(cols)]
    for k in range(n):
        f, l = person()
        vals = {"id": str(k + 1), "first_name": f, "last_name": l, "email": email(f, l), "phone": any_phone(),
                "iban": any_iban(), "ahv_nr": ahv_dotted(ahv()), "ssn": ssn(), "card_number": any_card(),
                "city": rng.choice(["Zürich", "Bern", "Basel", "Genève", "Lausanne"])}
        out.append(",".join(vals[c] for c in cols))
    return "\n".join(out) + "\n"


add("csv/crm_export_40.csv", csv_people(40, ["id", "first_name", "last_name", "email", "phone"]), "email", "phone")
add("csv/payroll_30.csv", csv_people(30, ["id", "first_name", "last_name", "iban", "ahv_nr"]), "iban", "ahv")
add("csv/us_staff_26.csv", csv_people(26, ["id", "first_name", "last_name", "ssn", "city"]), "us_ssn")
add("csv/cards_28.csv", csv_people(28, ["id", "last_name", "card_number"]), "credit_card")
add("csv/contacts_8.csv", csv_people(8, ["id", "first_name", "email", "city"]), "email")
add("csv/contacts_20.csv", csv_people(20, ["id", "first_name", "last_name", "email"]), "email")
add("csv/iban_3.csv", csv_people(3, ["id", "last_name", "iban"]), "iban")
prod = ["sku,name,price_chf,stock,ean"] + [f"SKU-{digits(6)},Widget {k},{rng.randint(1, 999)}.{digits(2)},"
                                           f"{rng.randint(0, 500)},76{digits(11)}" for k in range(100)]
add("csv/products_negative.csv", "\n".join(prod) + "\n")
sensor = ["timestamp,device_id,temperature,humidity"] + [f"{ts()},{uuid()},{rng.uniform(15, 30):.2f},"
                                                         f"{rng.uniform(20, 80):.1f}" for _ in range(60)]
add("csv/sensor_negative.csv", "\n".join(sensor) + "\n")
orders = ["order_id,created,total,tracking"] + [f"{digits(12)},{ts()},{rng.randint(5, 900)}.{digits(2)},"
                                                f"99{digits(18)}" for _ in range(40)]
add("csv/orders_negative.csv", "\n".join(orders) + "\n")

# ---------------------------------------------------------------- e-mail (RFC 5322)
def mail(frm, to, subject, body, extra=""):
    return (f"From: {frm}\r\nTo: {to}\r\nSubject: {subject}\r\nDate: Thu, 26 Nov 2026 09:{digits(2)}:00 +0100\r\n"
            f"Message-ID: <{uuid()}@mail.{rng.choice(DOMAINS)}>\r\nMIME-Version: 1.0\r\n"
            f"Content-Type: text/plain; charset=utf-8\r\n{extra}\r\n{body}")


f, l = person()
add("email/signature.eml", mail(f"{f} {l} <{email(f, l)}>", email(), "Termin nächste Woche",
                                f"Hallo\r\n\r\nPasst Dienstag?\r\n\r\nGruss\r\n{f} {l}\r\nTel. {phone_ch_zh(False)}\r\n"
                                f"Mobile {phone_ch_mobile()}\r\n"), "email", "phone")
add("email/salary.eml", mail(email(), email(), "Lohnausweis",
                             f"Bitte Lohn ab sofort auf IBAN {iban_grouped(any_iban('CH'))} überweisen.\r\n"
                             f"AHV-Nr. {ahv_dotted(ahv())}\r\n"), "email", "iban", "ahv")
add("email/hr_ssn.eml", mail(email(), email(), "W-4 for new hire",
                             f"Hi,\r\nnew hire {' '.join(person())}, SSN {ssn()}, starts Monday.\r\n"), "email", "us_ssn")
add("email/creds.eml", mail(email(), email(), "prod access",
                            f"here you go:\r\naws_access_key_id = {aws_key()}\r\naws_secret_access_key = {aws_secret()}\r\n"),
    "email", "aws_access_key")
add("email/card.eml", mail(email(), email(), "Zahlung", f"Meine Karte: {grouped(any_card(), '-')} gültig bis 09/27\r\n"),
    "email", "credit_card")
add("email/plain.eml", mail(email(), email(), "Lunch?", "Hi, lunch at 12:15? Table for 4 booked (ref 48213).\r\n"),
    "email")
add("email/uk_nino.eml", mail(email(), email(), "P45", f"Her NI number is {nino()}.\r\n"), "email", "uk_nino")
bulk_to = ", ".join(email() for _ in range(30))
add("email/bulk_cc.eml", mail(email(), "undisclosed-recipients:;", "Einladung Apéro", "Liebe Alle ...\r\n",
                              extra=f"Cc: {bulk_to}\r\n"), "email")

# ---------------------------------------------------------------- application logs
def log_line(level, msg):
    return f"{ts()} {level:5} [{rng.choice(['http-nio-8080-exec-3', 'worker-2', 'main'])}] {msg}\n"


add("logs/auth_header.log", log_line("DEBUG", "request headers: {Host=api.internal, Authorization=Bearer " +
                                     jwt({"sub": uuid(), "exp": 1795000000}) + "}"), "jwt")
add("logs/payment_leak.log", log_line("ERROR", f"charge failed card={any_card()} reason=do_not_honor"), "credit_card")
add("logs/login.log", "".join(log_line("INFO", f"login ok user={email()} ip=10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.7")
                              for _ in range(3)), "email")
add("logs/iban_debug.log", log_line("DEBUG", f"SEPA transfer prepared debtor={any_iban('CH')} creditor={any_iban('DE')}"),
    "iban")
nginx = "".join(f"10.0.{rng.randint(0, 255)}.{rng.randint(1, 254)} - - [26/Nov/2026:09:{digits(2)}:{digits(2)} +0100] "
                f"\"GET /api/v2/orders/{digits(9)}?trace={hexs(32)} HTTP/1.1\" 200 {rng.randint(100, 90000)} "
                f"\"-\" \"okhttp/4.12.0\" rt={rng.random():.3f} req_id={uuid()}\n" for _ in range(30))
add("logs/nginx_access_negative.log", nginx)
add("logs/java_trace_negative.log", log_line("ERROR", "Unhandled exception") +
    "java.lang.IllegalStateException: order 4556737586899856 not found\n"
    "\tat ch.bank.orders.OrderService.load(OrderService.java:214)\n"
    "\tat ch.bank.orders.OrderController.get(OrderController.java:88)\n"
    f"\tat java.base/java.lang.Thread.run(Thread.java:1583)\ncorrelation={uuid()} span={hexs(16)}\n")
add("logs/k8s_events_negative.log", "".join(
    f"{ts()} Normal Pulled pod/api-{hexs(10)}-{hexs(5)} image \"registry.internal/api@sha256:{hexs(64)}\" "
    f"in 1.{digits(3)}s (v1.29.3+k3s1)\n" for _ in range(10)))
add("logs/metrics_negative.log", "".join(
    f"{rng.randint(1732600000000, 1732700000000)} cpu={rng.random():.4f} mem={rng.randint(10**8, 10**9)} "
    f"gc_pause_ns={rng.randint(10**6, 10**9)}\n" for _ in range(40)))
add("logs/ssn_app.log", log_line("WARN", f"identity check failed for applicant ssn={ssn()} (mismatch)"), "us_ssn")
add("logs/github_token.log", log_line("DEBUG", f"git clone https://x-access-token:{gh_token('ghs_')}@github.com/org/repo.git"),
    "github_token")

# ---------------------------------------------------------------- source code and config
add("code/dotenv.env", f"APP_ENV=production\nDATABASE_URL=postgres://app@db.internal:5432/app\n"
                       f"AWS_ACCESS_KEY_ID={aws_key()}\nAWS_SECRET_ACCESS_KEY={aws_secret()}\n"
                       f"GITHUB_TOKEN={gh_token()}\n", "aws_access_key", "github_token")
add("code/deploy.py", "import paramiko\n\nKEY = '''" + pem_key("rsa") + "'''\n\n"
                      "def connect(host):\n    return paramiko.RSAKey.from_private_key(io.StringIO(KEY))\n",
    "private_key")
add("code/ci_config.yaml", f"jobs:\n  release:\n    env:\n      GH_TOKEN: {gh_token('gho_')}\n"
                           f"    steps:\n      - run: make release\n", "github_token")
add("code/client.js", f"const api = axios.create({{ baseURL: 'https://api.internal',\n"
                      f"  headers: {{ Authorization: 'Bearer {jwt({'sub': 'svc-batch', 'role': 'admin'})}' }} }});\n",
    "jwt")
add("code/boto_session.py", f"session = boto3.Session(\n    aws_access_key_id='{aws_key('ASIA')}',\n"
                            f"    aws_secret_access_key='{aws_secret()}',\n    aws_session_token='{b64url(os.urandom(0) + bytes(rng.randrange(256) for _ in range(90)))}')\n",
    "aws_access_key")
add("code/signing_key.go", "package sign\n\nconst pkcs8 = `" + pem_key("pkcs8") + "`\n", "private_key")
add("code/terraform_negative.tf", 'provider "aws" {\n  region     = "eu-central-2"\n'
                                  '  access_key = "AKIAIOSFODNN7EXAMPLE"\n'
                                  '  secret_key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"\n}\n')
add("code/test_fixture_negative.py", "GITHUB_TOKEN = 'ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx'\n"
                                     "FAKE = 'ghp_" + "".join(rng.choice(B62) for _ in range(36)) + "'\n"
                                     "def test_token_is_masked():\n    assert mask(GITHUB_TOKEN).startswith('ghp_')\n")
add("code/uuids_negative.go", "package ids\n\nvar known = []string{\n" +
    "".join(f'\t"{uuid()}", // {hexs(40)}\n' for _ in range(15)) + "}\n")
lock = {"name": "web", "lockfileVersion": 3, "packages": {
    f"node_modules/{p}": {"version": v, "resolved": f"https://registry.npmjs.org/{p}/-/{p}-{v}.tgz",
                          "integrity": "sha512-" + base64.b64encode(bytes(rng.randrange(256) for _ in range(64))).decode()}
    for p, v in [("lodash", "4.17.21"), ("react", "18.3.1"), ("axios", "1.7.7"), ("zod", "3.23.8")]},
    "note": "install with npm i lodash@4.17.21 react@18.3.1"}
add("code/package_lock_negative.json", js(lock))
add("code/styles_negative.css", "@media screen and (min-width: 768px) {\n  .logo { background: url('logo@2x.png'); }\n}\n"
                                "@font-face { font-family: Inter; src: url('inter@3x.woff2'); }\n"
                                ".hero { color: #1a2b3c; width: calc(100% - 24px); }\n")
add("code/migration_negative.sql", "CREATE TABLE customers (id serial PRIMARY KEY, email text NOT NULL);\n" +
    "".join(f"INSERT INTO customers VALUES ({k}, 'seed{k}@shop.internal');\n" for k in range(5)))
add("code/readme_negative.md", "# Backups\n\nRun `pg_dump -Fc mydb > mydb.dump` nightly and `mysqldump --single-transaction"
                               " shop > shop.sql`.\nRestore with `pg_restore -d mydb mydb.dump`.\n"
                               "Docs: https://www.postgresql.org/docs/15/app-pgdump.html\n")
add("code/jwt_no_alg_negative.txt", "cookie: session=" + b64url(b'{"typ":"JWT"}') + "." +
    b64url(b'{"sub":"x","exp":1}') + "." + b64url(b"signature-bytes-here") + "\n")

# Kubernetes Secret: base64 values (the decoder must look inside).
tls_key = pem_key("ec")
add("code/k8s_secret.yaml", "apiVersion: v1\nkind: Secret\nmetadata:\n  name: api-tls\ntype: kubernetes.io/tls\ndata:\n"
                            f"  tls.key: {base64.b64encode(tls_key.encode()).decode()}\n", "private_key")
add("code/k8s_configmap_negative.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: api\ndata:\n"
                                        f"  LOG_LEVEL: info\n  BUILD: \"{hexs(40)}\"\n  REPLICAS: \"3\"\n"
                                        f"  CONFIG_B64: {base64.b64encode(b'feature_flags: [a, b, c]; region: eu-central-2').decode()}\n")

# ---------------------------------------------------------------- compressed / encoded carriers
add("encoded/payment.json.gz", gzip.compress(js({"card": any_card(), "amount": 42}).encode(), mtime=0), "credit_card")
add("encoded/base64_csv.json", js({"attachment": {"filename": "kunden.csv", "content_base64": base64.b64encode(
    csv_people(30, ["id", "first_name", "email"]).encode()).decode()}}), "email")

# ---------------------------------------------------------------- hard negatives
add("negatives/uuids.txt", "\n".join(uuid() for _ in range(40)) + "\n")
add("negatives/timestamps.txt", "\n".join(f"{ts()} epoch_ms={rng.randint(1700000000000, 1799999999999)} "
                                          f"epoch_ns={rng.randint(1700000000000000000, 1799999999999999999)}"
                                          for _ in range(30)) + "\n")
add("negatives/order_ids.txt", "\n".join(f"order #{digits(10)} ref {rng.randint(10**15, 10**16 - 1)} "
                                         f"invoice 2026-{digits(6)}" for _ in range(30)) + "\n")
add("negatives/hashes.txt", "\n".join(f"sha256 {hexs(64)}\nmd5 {hexs(32)}" for _ in range(20)) + "\n")
add("negatives/git_log.txt", "\n".join(f"{hexs(40)} {rng.choice(['fix', 'feat', 'chore'])}: update "
                                       f"{rng.choice(['parser', 'ci', 'deps'])} (#{rng.randint(100, 9999)})"
                                       for _ in range(25)) + "\n")
add("negatives/luhn_invalid_cards.txt", "\n".join(f"ref {bad_luhn(*rng.choice(CARD_BRANDS[:5]))}"
                                                  for _ in range(25)) + "\n")
add("negatives/luhn_invalid_grouped.txt", "\n".join(f"voucher {grouped(bad_luhn('4', 16))}" for _ in range(15)) + "\n")
add("negatives/iban_bad_check.txt", "\n".join(f"Konto {bad_iban()} / {iban_grouped(bad_iban())}"
                                              for _ in range(15)) + "\n")
add("negatives/versions.txt", "\n".join(f"v{rng.randint(0, 20)}.{rng.randint(0, 99)}.{rng.randint(0, 999)} "
                                        f"build {rng.randint(1000, 99999)}.{digits(4)} "
                                        f"oid 1.2.840.113549.1.1.{rng.randint(1, 14)} "
                                        f"ip 192.168.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
                                        for _ in range(25)) + "\n")
add("negatives/prices.txt", "\n".join(f"CHF {rng.randint(1, 99)}'{digits(3)}'{digits(3)}.{digits(2)} "
                                      f"EUR {rng.randint(1, 999)}.{digits(3)},{digits(2)}" for _ in range(20)) + "\n")
add("negatives/ssn_lookalikes.txt", "Published examples: 078-05-1120, 123-45-6789, 219-09-9999.\n"
                                    "ITIN 912-70-1234 and 900-12-3456 are not SSNs; 666-12-3456 never issued.\n"
                                    "Group 00: 536-00-1234, serial 0000: 536-22-0000.\n")
add("negatives/ahv_bad_check.txt", "\n".join(f"AHV {ahv_dotted(ahv()[:-1] + '0')}" for _ in range(1)) +
    "\nEAN 7612345678900\nGTIN 7601234567890\n")
add("negatives/aws_docs.txt", "Example: export AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE\n"
                              "export AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n"
                              "Another documented id: AKIAI44QH8DHBEXAMPLE\nRole ids look like AROAJ2UCCR6DPCEXAMPLE.\n")
add("negatives/public_key.pem", public_key_pem())
add("negatives/certificate.pem", cert_pem())
add("negatives/redacted_key.txt", "-----BEGIN PRIVATE KEY-----\n... redacted ...\n-----END PRIVATE KEY-----\n")
add("negatives/phone_like.txt", "Release 2026.11.26 build 0.12.345.6789, tel-aviv-1 region, "
                                "+1 vote, x+1234567, 41 44 tickets, room 044-2.\nserial 0041-4466-8180\n")
add("negatives/emails_reserved.txt", "Contact user@example.com or admin@test, see docs@example.org; "
                                     "alice@localhost; bob@internal.invalid\n")
add("negatives/sql_docs.txt", "-- create schema\nCREATE TABLE t (a int);\nINSERT INTO t VALUES (1),(2),(3);\n"
                              "COPY t FROM '/tmp/t.csv' WITH (FORMAT csv);\n")
add("negatives/base64_blob.txt", base64.b64encode(bytes(rng.randrange(256) for _ in range(600))).decode() + "\n")
add("negatives/random_digits.txt", "\n".join(f"{digits(rng.randint(5, 12))} {digits(rng.randint(5, 12))}"
                                             for _ in range(30)) + "\n")
add("negatives/ticket.json", js({"ticket": f"INC{digits(7)}", "opened": ts(), "priority": 3, "assignee_id": uuid(),
                                 "summary": "VPN drops every 15 min", "kb": "KB0012345"}))
add("negatives/nino_like.txt", "Part numbers AB123456C, QQ123456C, GB123456A in stock; see catalogue.\n")
add("negatives/steuer_like.txt", "Auftrag 86095742719 versandt; Tracking 12345678901.\n")

# ---------------------------------------------------------------- more credentials and IDs
add("json/ci_secrets.json", js({"secrets": {"AWS_ACCESS_KEY_ID": aws_key(), "AWS_SECRET_ACCESS_KEY": aws_secret(),
                                            "region": "eu-central-2"}}), "aws_access_key")
add("logs/sts_assume_role.log", log_line("DEBUG", f"assumed role arn:aws:iam::{digits(12)}:role/deploy "
                                         f"AccessKeyId={aws_key('ASIA')} Expiration={ts()}"), "aws_access_key")
add("json/github_app.json", js({"installation": rng.randint(10**6, 10**7), "token": gh_token("ghs_"),
                                "refresh_token": gh_token("ghr_"), "expires_at": ts()}), "github_token")
add("code/gitconfig.txt", f"[credential]\n\thelper = store\n# https://user:{gh_token('ghu_')}@github.com\n",
    "github_token")
add("logs/cookie_jwt.log", log_line("INFO", "set-cookie: id_token=" + jwt({"sub": uuid(), "email_verified": True},
                                                                           alg="RS256", extra={"kid": hexs(8)}) +
                                     "; HttpOnly; Secure"), "jwt")
add("email/steuer_id.eml", mail(email(), email(), "Lohnsteuer", f"Meine Steuer-ID lautet {steuer_id()}.\r\n"),
    "email", "de_steuer_id")
add("form/elster_form.txt", form({"name": " ".join(person()), "idnr": steuer_id(), "jahr": "2025"}), "de_steuer_id")
nino_rows = ["employee_id,surname,ni_number"] + [f"E{digits(5)},{rng.choice(LAST)},{nino()}" for _ in range(5)]
add("csv/uk_ni_5.csv", "\n".join(nino_rows) + "\n", "uk_nino")
add("email/ec_key.eml", mail(email(), email(), "the key", "as discussed:\r\n\r\n" + pem_key("ec").replace("\n", "\r\n")),
    "email", "private_key")
add("json/openssh_deploy_key.json", json.dumps({"title": "ci", "key": openssh_key()}) + "\n", "private_key")

# ---------------------------------------------------------------- real sqlite .dump
def sqlite_dump():
    db = f"/tmp/eg-corpus-{os.getpid()}.db"
    if os.path.exists(db):
        os.remove(db)
    sql = "CREATE TABLE patients(id INTEGER PRIMARY KEY, name TEXT, email TEXT, ahv TEXT);\n"
    for k in range(12):
        f, l = person()
        sql += f"INSERT INTO patients VALUES({k + 1},'{f} {l}','{email(f, l)}','{ahv_dotted(ahv())}');\n"
    subprocess.run(["sqlite3", db], input=sql, text=True, check=True)
    out = subprocess.run(["sqlite3", db, ".dump"], capture_output=True, text=True, check=True).stdout
    os.remove(db)
    return out


add("dumps/sqlite_patients.sql", sqlite_dump(), "db_dump", "email", "ahv")

# ---------------------------------------------------------------- issue 21: precision cases
# Appended last so every sample above keeps its bytes (one random stream). Sidecars of
# these give counts ("email 3"): distinct values, records for bulk_pii.

def norm_phone(p):
    return "+" + "".join(c for c in p if c.isdigit())


def n(cat, values):
    return f"{cat} {len(set(values))}"


def records(rows):
    """Records that bring a value no earlier record held (the engine's bulk_pii count)."""
    seen, count = set(), 0
    for values in rows:
        fresh = [v for v in values if v not in seen]
        seen.update(values)
        count += 1 if fresh else 0
    return count


# Bulk is about people: 300 and 120 people are bulk; 20 customers with 4 values each, a
# cron log repeating one address, an ORM log about 3 people are not.
text = csv_people(300, ["id", "first_name", "last_name", "email", "iban"])
rows = [line.split(",") for line in text.splitlines()[1:]]
add("csv/customers_300.csv", text, n("email", [r[3] for r in rows]), n("iban", [r[4] for r in rows]),
    f"bulk_pii {len(rows)}")
people = [person() for _ in range(120)]
custs = [{"id": k + 1, "name": f"{f} {l}", "email": email(f, l), "phone": any_phone()} for k, (f, l) in enumerate(people)]
add("json/customers_export_120_pretty.json",
    json.dumps({"customers": custs}, indent=2, ensure_ascii=False) + "\n",
    n("email", [c["email"] for c in custs]), n("phone", [norm_phone(c["phone"]) for c in custs]),
    f"bulk_pii {records([('e' + c['email'], 'p' + norm_phone(c['phone'])) for c in custs])}")
people = [person() for _ in range(20)]
custs = [{"id": 400 + k, "name": f"{f} {l}", "email": email(f, l), "phone": any_phone(), "iban": any_iban(),
          "card": any_card()} for k, (f, l) in enumerate(people)]
add("json/api_customers_page_20.json", js({"page": 3, "per_page": 20, "customers": custs}),
    n("email", [c["email"] for c in custs]), n("phone", [norm_phone(c["phone"]) for c in custs]),
    n("iban", [c["iban"] for c in custs]), n("credit_card", [c["card"] for c in custs]))
oncall = email()
add("logs/cron_mail_240.log", "".join(
    f"Nov 26 {k // 60:02d}:{k % 60:02d}:01 backup CRON[{4000 + k}]: (root) MAIL (mailed {rng.randint(200, 4000)} bytes "
    f"of output but got status 0x004b from MTA to {oncall})\n" for k in range(240)), "email 1")
trio = [(email(), any_phone(), any_iban()) for _ in range(3)]
orm = ("2026-11-26 10:00:00,001 INFO [sqlalchemy.engine.Engine] SELECT users.id, users.email, users.phone, "
       "users.iban FROM users WHERE users.id = ?\n")
for k in range(68):
    e, ph, ib = trio[k % 3]
    orm += (f"2026-11-26 10:00:{k % 60:02d},{rng.randint(100, 999)} INFO [sqlalchemy.engine.Engine] [cached since "
            f"{rng.random():.3f}s ago] ({k % 3 + 1},) row=({k % 3 + 1}, '{e}', '{ph}', '{ib}')\n")
add("logs/orm_3_people.log", orm, n("email", [t[0] for t in trio]), n("phone", [norm_phone(t[1]) for t in trio]),
    n("iban", [t[2] for t in trio]))

# A card read out of a longer identifier: IBANs of every SEPA country whose groups hold
# Luhn-valid card windows, grouped and compact; '+' phone numbers of every country the
# pack knows, spaced and compact.
SEPA = {"AD": 24, "AT": 20, "BE": 16, "BG": 22, "CH": 21, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "EE": 20,
        "ES": 24, "FI": 18, "FR": 27, "GB": 22, "GI": 23, "GR": 27, "HR": 21, "HU": 28, "IE": 22, "IS": 26,
        "IT": 27, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MT": 31, "NL": 18, "NO": 15, "PL": 28,
        "PT": 25, "RO": 24, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "VA": 22, "AL": 28, "MD": 24, "ME": 22,
        "MK": 19}


def sepa_iban_with_card_window(cc):
    n_ = SEPA[cc] - 4
    bban = card(rng.choice(["4", "51", "3000", "6011", "3530"]), 16) if n_ >= 16 else ""
    return iban(cc, bban + digits(n_ - len(bban)))


codes = sorted(SEPA)
for part in range(4):
    lines, ibans = [], []
    for cc in codes[part::4]:
        i = sepa_iban_with_card_window(cc)
        ibans.append(i)
        lines.append(f"{cc};{iban_grouped(i)}")
        lines.append(f"{cc};{i}")
    add(f"csv/sepa_ibans_{part + 1}.txt", "country;iban\n" + "\n".join(lines) + "\n", n("iban", ibans))
i1, i2 = sepa_iban_with_card_window("SE"), sepa_iban_with_card_window("FR")
frm, to = email(), email()
add("email/iban_and_card.eml", mail(frm, to, "Zahlungsangaben",
                                     f"IBAN {iban_grouped(i1)}\r\nIBAN {iban_grouped(i2)}\r\n"
                                     f"Kreditkarte {grouped(card('4', 16))}\r\n"),
    n("email", [frm, to]), "iban 2", "credit_card 1")
PHONES = ["+41 44 668 18 00", "+41 79 412 34 56", "+423 660 234 567", "+423 234 56 78", "+49 160 26889900",
          "+49 1512 3456789", "+49 30 12345678", "+43 664 123456", "+43 1 234567890", "+33 6 12 34 56 78",
          "+33 1 23 45 67 89", "+39 312 345 6789", "+39 02 1234 5678", "+44 7400 123456", "+44 20 7946 0958",
          "+1 650 253 0000", "+1 201 555 0123"]
for p in PHONES:
    mark("phone", p), mark("phone", p.replace(" ", ""))
add("json/phone_book.json", js({"contacts": [{"name": " ".join(person()), "tel": p, "mobile": p.replace(" ", "")}
                                             for p in PHONES]}), n("phone", [norm_phone(p) for p in PHONES]))
add("logs/us_contacts.log", "".join(log_line("INFO", f"callback requested phone {p}")
                                     for p in [mark("phone", q) for q in ["+1 650-253-0000", "+1 212.555.0142",
                                                                           "+1 415-555-0199"]]), "phone 3")

# One value, one category: SSNs in phone-shaped contexts.
frm, to = email(), email()
add("email/ssn_contact.eml", mail(frm, to, "new hire", "".join(
    f"contact phone / SSN: {mark('us_ssn', s)}\r\n" for s in ["012-34-5678", "041-23-4567", "536-90-4399"])),
    n("email", [frm, to]), "us_ssn 3")

# Maestro: 12 digits in Maestro ranges are cards; other 12-digit numbers are not.
add("json/maestro_12.json", js({"payment": {"method": "maestro", "pan": card("6759", 12), "amount": 19.9}}),
    "credit_card 1")
add("negatives/twelve_digit_ids_negative.txt", "".join(
    f"ref {card(p, 12)} qty {rng.randint(1, 9)}\n" for p in ["4111", "5105", "3782", "6011", "3530", "6212", "4006",
                                                              "5019", "6760", "9780"]))


# A column header is the context of every row below it: keyword-led values (Steuer-ID,
# NINO) far from the header's keyword; NINO-shaped part numbers in a column no header
# names are none.
lohn = [(f"P{digits(5)}", " ".join(person()), steuer_id(), rng.randint(1, 5)) for _ in range(40)]
add("csv/de_lohn_40.csv", "Personalnummer;Name;Steuer-ID;Steuerklasse\r\n" +
    "".join(f"{p};\"{nm}\";{sid};{k}\r\n" for p, nm, sid, k in lohn), n("de_steuer_id", [r[2] for r in lohn]))
add("csv/parts_negative.csv", "sku,part_no,qty,warehouse\n" + "".join(
    f"SKU-{digits(6)},{nino()},{rng.randint(1, 500)},{rng.choice(['ZH', 'BE', 'BS'])}\n" for _ in range(40)))

def main():
    for sub in os.listdir(HERE):
        p = os.path.join(HERE, sub)
        if os.path.isdir(p):
            shutil.rmtree(p)
    for path, content, cats in SAMPLES:
        full = os.path.join(HERE, path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "wb") as fh:
            fh.write(content)
        located = [f"at {c} {a}-{b}" for a, b, c in occurrences(content, cats)]
        with open(full + ".expect", "w") as fh:
            fh.write("\n".join(sorted(set(cats)) + located) + "\n")
    counts = Counter(c.split()[0] for _, _, cats in SAMPLES for c in cats)
    print(f"{len(SAMPLES)} samples:", dict(sorted(counts.items())))


if __name__ == "__main__":
    main()
