# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Checks of free text that becomes part of an object key, a URL, a file or a header.

A value that holds a line break reaches a systemd unit, a cron entry or an HTTP header; a
path segment `..` moves a key to another folder once a server or an SDK normalises the URL;
a query string carries a SAS signature. Each check here refuses a whole class of such values
with a message that names the parameter and says what to write instead; none of them echoes
a query string, a fragment or the user part of a URL, which may hold a secret.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from typing import List, NamedTuple, Optional, Tuple
from urllib.parse import SplitResult, urlsplit

from .errors import ConfigurationError

# Unicode categories no name or URL needs: controls (tab, line feed, DEL, U+0085 ...), format
# characters (zero-width and bidirectional marks), surrogates, private use, unassigned, and
# the line and paragraph separators.
_UNSAFE_CATEGORIES = ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp")
_HOST_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


def unsafe_characters(text: str) -> List[str]:
    """The code points of text's control, format, separator and unassigned characters, as U+XXXX."""
    found = []
    for character in text:
        if unicodedata.category(character) in _UNSAFE_CATEGORIES:
            code = "U+%04X" % ord(character)
            if code not in found:
                found.append(code)
    return found


UNIT_TEXT_REASON = "line breaks and tabs cannot be written to unit files, cron entries, headers or backup.info"


def check_printable(text: str, parameter: str, what: Optional[str] = None, reason: str = UNIT_TEXT_REASON) -> None:
    """Refuse control characters (line breaks, tabs ...) and text with spaces at either end."""
    what = what or parameter
    unsafe = unsafe_characters(text)
    if unsafe:
        raise ConfigurationError(
            "%s holds control or invisible characters (%s): remove them; %s" % (what, ", ".join(unsafe), reason),
            parameter)
    if text != text.strip():
        raise ConfigurationError(
            "%s starts or ends with whitespace, which other tools strip when they read it back: remove it"
            % what, parameter)


def check_segment(segment: str, parameter: str, what: str) -> None:
    """One folder name of an object key: not empty, not . or .., no slash, backslash or percent sign.

    The look-alikes count: a full-width dot or slash turns into the ASCII one under NFKC, which
    some servers apply to URLs.
    """
    folded = unicodedata.normalize("NFKC", segment)
    if not segment:
        raise ConfigurationError("%s has an empty folder name (two slashes in a row): remove the extra slash"
                                 % what, parameter)
    if folded in (".", ".."):
        raise ConfigurationError(
            "%s has a folder named %r, which servers and SDKs resolve as a relative path, so that the backup "
            "would go elsewhere: name the folder itself" % (what, segment), parameter)
    for character, name in (("\\", "a backslash, which Azure and browsers read as a slash"),
                            ("%", "a percent sign: percent-encoding is not decoded; write the characters "
                                  "themselves"),
                            ("/", "a slash in another form")):
        if character in folded:
            raise ConfigurationError("%s has %s" % (what, name), parameter)


def check_name(name: str, parameter: str) -> None:
    """A name that is one folder of every key (server_name): printable, one valid segment."""
    check_printable(name, parameter)
    if "/" in name:
        raise ConfigurationError("%s=%r must be one folder name, without '/'" % (parameter, name), parameter)
    check_segment(name, parameter, "%s=%r" % (parameter, name))


def shown_url(url: str) -> str:
    """The URL as an error message may show it: without query, fragment, parameters (after ';'
    in an http(s) URL) and user information."""
    cuts = r"[?#;]" if url.lower().startswith(("http:", "https:")) else r"[?#]"
    text = re.split(cuts, url, maxsplit=1)[0]
    scheme, separator, rest = text.partition("://")
    if separator:
        authority, slash, path = rest.partition("/")
        text = scheme + separator + authority.rpartition("@")[2] + slash + path
    return text


class UrlParts(NamedTuple):
    scheme: str
    host: str
    split: SplitResult
    netloc: str
    path: str


def split_url(url: str, parameter: str, example: str) -> UrlParts:
    """Split a URL after refusing what would be dropped or echoed silently.

    urlsplit removes tabs and line breaks and drops nothing else, but a query or a fragment
    would not reach the store and may hold a signature; user information may hold a password.
    """
    if not isinstance(url, str) or not url:
        raise ConfigurationError("%s must be a URL such as %s" % (parameter, example), parameter)
    shown = shown_url(url)
    check_printable(url, parameter, "%s=%r" % (parameter, shown))
    if "?" in url or "#" in url:
        raise ConfigurationError(
            "%s=%r has a query string or a fragment (after ? or #), which would be ignored: remove it (a SAS "
            "token goes in azure_storage_sas_token)" % (parameter, shown), parameter)
    try:
        parts: SplitResult = urlsplit(url)
        host = parts.hostname or ""
    except ValueError as error:
        raise ConfigurationError("%s=%r is not a valid URL (%s): use %s" % (parameter, shown, error, example),
                                 parameter)
    if ";" in url and parts.scheme.lower() in ("http", "https"):
        raise ConfigurationError(
            "%s=%r has parameters after ';', which the reference tools drop from an http(s) URL: remove them"
            % (parameter, shown), parameter)
    if "@" in parts.netloc:
        raise ConfigurationError(
            "%s=%r holds user information before '@': remove it and give credentials in their own parameters"
            % (parameter, shown), parameter)
    return UrlParts(parts.scheme.lower(), host, parts, parts.netloc, parts.path)


def check_host(parts: UrlParts, parameter: str, example: str) -> None:
    """A DNS name (letters, digits, hyphens; no underscore), an IPv4 address or a bracketed IPv6 one,
    and a port from 1 to 65535 if any."""
    try:
        port = parts.split.port
    except ValueError:
        port = 0
    if port == 0 or parts.netloc.endswith(":"):
        raise ConfigurationError("%s has a port that is not a number from 1 to 65535: use %s" % (parameter, example),
                                 parameter)
    host = parts.host
    if host and parts.netloc.startswith("["):
        try:
            ipaddress.IPv6Address(host.split("%", 1)[0])
            return
        except ValueError:
            pass
    labels = host[:-1].split(".") if host.endswith(".") else host.split(".")
    if host and len(host) <= 253 and all(_HOST_LABEL.match(label) for label in labels):
        return
    raise ConfigurationError(
        "%s has the host %r, which is not a host name (letters, digits, hyphens and dots; no underscore) or an "
        "IP address: use %s" % (parameter, host or parts.netloc, example), parameter)


def check_key_path(path: str, parameter: str, what: str) -> str:
    """The path of a destination URL: its folders, without the slashes at both ends."""
    if path in ("", "/"):
        return ""
    inner = path[1:] if path.startswith("/") else path
    inner = inner[:-1] if inner.endswith("/") else inner
    for segment in inner.split("/"):
        check_segment(segment, parameter, what)
    return inner


def split_at(path: str, count: int) -> Tuple[List[str], str]:
    """The first `count` folders of a URL path and the rest of it (with its leading slash)."""
    segments = path.split("/")[1:]
    head = segments[:count]
    return head, "/" + "/".join(segments[count:])
