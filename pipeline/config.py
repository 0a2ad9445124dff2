"""Schemas of ``python -m pipeline``: the root config and one dataclass per concern.

Values live in ``conf/pipeline.yaml`` and its groups (``conf/executor/``, ``conf/source/``); the
schemas are registered with Hydra's ConfigStore in ``register()`` so the YAML is composed onto them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import MISSING

from model.base.schema import ConfigError, hydra_help, param

CONF = Path(__file__).resolve().parents[1] / "conf"
# The config groups of conf/ that python -m pipeline reads, as --help lists them (tests/test_help.py
# checks that every group of conf/ is one app's); train/config.py's GROUPS are the others.
GROUPS = ("executor", "source", "links")

# Every stage of the corpus, in data-flow order (docs/runtime.md, "Decisions"): the names a config may
# give. pipeline.registry.STAGES gives each one's passes, in this order (checked there, at import).
STAGE_ORDER = ("links", "fetch", "extract", "dedup", "publish", "overlap", "tokenize")


# --- executors -----------------------------------------------------------------------------------


@dataclass
class ExecutorConfig:
    """Where tasks run. Subclassed by each executor; ``name`` picks the implementation."""

    name: str = param(MISSING, "executor implementation", choices=("local", "slurm"))


@dataclass
class LocalExecutorConfig(ExecutorConfig):
    name: str = param("local", "executor implementation", choices=("local",))
    workers: int | None = param(None, "worker processes; null means one per CPU core", ge=1)
    start_method: str = param(
        "spawn", "how workers start (spawn is safe with threads and lxml)",
        choices=("spawn", "forkserver", "fork"),
    )


@dataclass
class SlurmExecutorConfig(ExecutorConfig):
    name: str = param("slurm", "executor implementation", choices=("slurm",))
    partition: str | None = param(None, "SLURM partition; null uses the cluster's default")
    account: str | None = param(None, "SLURM account to charge; null for none")
    qos: str | None = param(None, "SLURM quality of service; null for none")
    time_min: int = param(240, "wall-clock limit of one task, in minutes", ge=1)
    cpus_per_task: int = param(1, "CPU cores of one task", ge=1)
    mem_gb: float = param(4.0, "memory of one task, in GiB", gt=0)
    array_parallelism: int = param(256, "most array tasks of one stage running at once", ge=1)
    job_name_prefix: str = param("webtext", "prefix of job names: <prefix>-<stage>")
    setup: list[str] = param(doc="shell lines run before each task (module load, ...)", factory=list)
    additional: dict[str, str] = param(
        doc="extra #SBATCH options, as option: value (e.g. constraint: cpu)", factory=dict
    )
    wait: bool = param(True, "wait for the jobs and collect stats; false submits and returns")


# --- sources (read by the links stage) -----------------------------------------------------------


@dataclass
class SourceConfig:
    """Where Reddit submissions come from."""

    name: str = param(MISSING, "source implementation", choices=("pushshift", "reddit"))


@dataclass
class PushshiftSourceConfig(SourceConfig):
    name: str = param("pushshift", "source implementation", choices=("pushshift",))
    files: list[str] = param(doc="submission dumps (RS_*.zst, .xz, .bz2): paths or globs", factory=list)


@dataclass
class RedditSourceConfig(SourceConfig):
    name: str = param("reddit", "source implementation", choices=("reddit",))
    subreddits: list[str] = param(doc="subreddits to list, without the r/ prefix", factory=list)
    listings: list[str] = param(doc="listings to read: new, top, hot", factory=lambda: ["new", "top"])
    top_time_filter: str = param(
        "all", "time filter of the top listing",
        choices=("all", "year", "month", "week", "day", "hour"),
    )
    site: str | None = param(None, "praw.ini site with the credentials; null: praw_* env vars")
    user_agent: str | None = param(
        None, "user agent; null takes praw's (praw.ini or praw_user_agent), else webtext's"
    )
    archive: str = param("reddit", "folder (relative to workdir) of the collected submissions")
    timeout_s: float = param(30.0, "timeout of one API request, in seconds", gt=0)
    oauth_url: str | None = param(None, "API base URL override (tests, proxies); null: Reddit's")
    reddit_url: str | None = param(None, "site base URL override (tests, proxies); null: Reddit's")

    def check(self) -> None:
        unknown = [name for name in self.listings if name not in ("new", "top", "hot")]
        if not self.listings or unknown:
            raise ConfigError("listings", f"must be a non-empty list of new, top, hot; got {self.listings}")
        bad = [name for name in self.subreddits if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_]{1,20}", name)]
        if bad:
            raise ConfigError("subreddits", f"not subreddit names (give them without r/): {bad}")


# --- stages --------------------------------------------------------------------------------------


# The default blocklists: hosts of images, video, audio, social networks and Reddit itself, and file
# types that are not web pages (compared after lowercasing and dropping the query).
BLOCKED_DOMAINS = (
    "reddit.com", "redd.it", "redditmedia.com", "redditstatic.com", "reddituploads.com",
    "imgur.com", "gfycat.com", "giphy.com", "tenor.com", "gyazo.com", "imgflip.com", "puu.sh",
    "flickr.com", "staticflickr.com", "deviantart.com", "pinterest.com", "500px.com",
    "youtube.com", "youtu.be", "vimeo.com", "dailymotion.com", "twitch.tv", "streamable.com",
    "liveleak.com", "vine.co", "tiktok.com", "soundcloud.com", "spotify.com", "bandcamp.com",
    "twitter.com", "x.com", "t.co", "facebook.com", "fb.com", "fb.me", "instagram.com",
    "linkedin.com", "snapchat.com", "discord.gg", "discord.com", "tumblr.com",
    "dropbox.com", "drive.google.com", "photos.google.com", "mega.nz",
)
BLOCKED_EXTENSIONS = (
    "jpg", "jpeg", "png", "gif", "gifv", "webp", "bmp", "tif", "tiff", "svg", "ico", "heic",
    "mp4", "webm", "mov", "avi", "mkv", "flv", "wmv", "m4v", "mp3", "wav", "ogg", "oga", "flac",
    "m4a", "aac", "opus", "zip", "rar", "7z", "tar", "gz", "tgz", "bz2", "xz", "zst", "exe", "msi",
    "dmg", "apk", "deb", "rpm", "iso", "bin", "pdf", "doc", "docx", "xls", "xlsx", "ppt", "pptx",
    "odt", "epub", "mobi", "torrent", "csv", "json", "xml",
)
TRACKING_PARAMS = (
    "utm_*", "fbclid", "gclid", "dclid", "gclsrc", "msclkid", "mc_cid", "mc_eid", "yclid",
    "igshid", "_ga", "_hsenc", "_hsmi", "mkt_tok", "ref_src", "ref_url", "spm", "cmpid",
)


@dataclass
class LinksConfig:
    """Reddit submissions -> unique, normalized URLs, partitioned by host (map, then reduce)."""

    partitions: int = param(64, "reduce tasks and output parts; URLs go by hash of host", ge=1)
    min_score: int = param(3, "Reddit score a link needs (WebText: 3)")
    score_rule: str = param(
        "per_submission",
        "per_submission: one submission reaches min_score (WebText); sum_per_url: scores summed "
        "per URL (OpenWebText2)",
        choices=("per_submission", "sum_per_url"),
    )
    drop_over_18: bool = param(True, "drop submissions marked over_18")
    created_after_utc: int | None = param(None, "keep submissions created at or after this unix time")
    created_before_utc: int | None = param(None, "keep submissions created before this unix time")
    drop_wikipedia: bool = param(True, "drop Wikipedia links (GPT-2 did, to keep eval sets clean)")
    blocked_domains: list[str] = param(doc="hosts dropped with their subdomains",
                                       factory=lambda: list(BLOCKED_DOMAINS))
    blocked_extensions: list[str] = param(doc="URL path endings dropped (no dot)",
                                          factory=lambda: list(BLOCKED_EXTENSIONS))
    tracking_params: list[str] = param(doc="query keys removed; a trailing * matches a prefix",
                                       factory=lambda: list(TRACKING_PARAMS))
    read_bytes: int = param(
        256 << 10, "bytes read from a dump at a time (compressed for zstd, else decompressed)", ge=1
    )
    map_buffer_rows: int = param(
        1_000_000, "links a map task holds before writing sorted runs (bounds its memory)", ge=1
    )
    row_group_rows: int = param(100_000, "rows per Parquet row group of the output", ge=1)
    month_min_link_posts: int = param(1000, "months with fewer link posts are not judged", ge=1)
    month_collapse_ratio: float = param(
        0.5, "flag a month whose share of score >= min_score is below this x the median", gt=0, le=1
    )

    def check(self) -> None:
        after, before = self.created_after_utc, self.created_before_utc
        if after is not None and before is not None and after >= before:
            raise ConfigError("created_before_utc", f"{before} is not after created_after_utc={after}")


ARCHIVES = ("wayback", "commoncrawl")
# Live outcomes after which a link is taken for dead (``fetch.dead_reasons``): the name no longer
# resolves, nothing answers, the certificate or TLS setup is broken (sites left to rot), no answer
# in time, or the server says the page is gone or fails. Refusals by the site (403, robots.txt) are
# not: the page may be there, and the site asked not to be crawled.
DEAD_REASONS = ("dns_error", "connection_error", "ssl_error", "timeout", "http_404", "http_410",
                "http_5??")

DEFAULT_USER_AGENT = (
    "webtext/0.1 (WebText-style research crawler; set fetch.user_agent to include your contact)"
)


@dataclass
class FetchConfig:
    """links -> raw responses: a polite, safe, resumable crawler writing WARC and a Parquet index."""

    concurrency: int = param(256, "requests in flight at once in one task (over all hosts)", ge=1)
    per_host_delay_s: float = param(1.0, "least time between two requests to one host", ge=0)
    timeout_s: float = param(30.0, "total deadline of one URL, redirects and body included", gt=0)
    connect_timeout_s: float = param(10.0, "deadline to open a connection", gt=0)
    read_timeout_s: float = param(15.0, "longest wait for the next bytes of a response", gt=0)
    max_bytes: int = param(4 << 20, "body cap, counted compressed and after decompression", ge=1)
    max_redirects: int = param(5, "redirects followed before giving up", ge=0)
    retries: int = param(2, "retries after a connection error, 429 or 5xx", ge=0)
    retry_backoff_s: float = param(1.0, "first retry delay; doubles at each retry", ge=0)
    max_retry_after_s: float = param(60.0, "longest Retry-After honoured; longer ones fail the URL", ge=0)
    user_agent: str = param(DEFAULT_USER_AGENT, "User-Agent header, and the agent robots.txt is read for")
    robots: bool = param(True, "honour robots.txt (RFC 9309)")
    content_types: list[str] = param(doc="media types kept (others: not_html)",
                                     factory=lambda: ["text/html", "application/xhtml+xml"])
    allow_private: bool = param(
        False, "allow loopback, private, link-local and metadata addresses: tests and demos only"
    )
    allowed_networks: list[str] = param(
        doc="CIDRs exempt from the address guard (tests on loopback)", factory=list
    )
    hosts: list[str] = param(
        doc="name=address overrides of DNS, like /etc/hosts (tests, demos): ['a.example=127.0.0.1'];"
        " '*.test=127.0.0.1' maps every name under .test (an exact name wins, then the longest suffix)",
        factory=list,
    )
    warc_max_bytes: int = param(1 << 30, "rotate a task's WARC file past this size", ge=1)
    warc_writers: int = param(2, "threads writing WARC files of a task (gzip and digests in parallel)",
                              ge=1)
    flush_every: int = param(64, "outcomes between flushes of the index journal", ge=1)
    # --- web archives (docs/archive.md) ---
    archive: Any = param(
        "none", "web archives for pages the live web lacks: none, wayback, commoncrawl, or a list "
        "tried in order, e.g. [wayback,commoncrawl]"
    )
    prefer: str = param(
        "live", "live: a URL goes to the archives only when its live fetch ends in one of "
        "dead_reasons; archive: the snapshot nearest the submission first, live only when no "
        "archive has one", choices=("live", "archive"),
    )
    dead_reasons: list[str] = param(
        doc="live outcomes that count as a dead link (fnmatch patterns over the reasons)",
        factory=lambda: list(DEAD_REASONS),
    )
    archive_window_days: float = param(
        365.0, "a snapshot further than this from the submission time is not used (no_snapshot)", gt=0
    )
    archive_rate_per_s: float = param(
        1.0, "requests per second to each archive (lookups and captures), shared by every task of "
        "the run", gt=0
    )
    wayback_cdx_url: str = param("https://web.archive.org/cdx/search/cdx", "the Wayback CDX API")
    wayback_replay_url: str = param("https://web.archive.org/web", "the Wayback replay prefix: "
                                    "captures are <this>/<timestamp>id_/<url>")
    commoncrawl_crawls: list[str] = param(
        doc="Common Crawl crawls to look in (e.g. [CC-MAIN-2017-13, CC-MAIN-2017-17]); the nearest "
        "capture to the submission wins", factory=list,
    )
    commoncrawl_cdx_url: str = param("https://index.commoncrawl.org",
                                     "Common Crawl's CDX servers: <this>/<crawl>-index")
    commoncrawl_data_url: str = param("https://data.commoncrawl.org",
                                      "where Common Crawl's WARC files (and index tables) are read")
    commoncrawl_index: str = param(
        "", "empty: look each URL up on the CDX server; a folder holding Common Crawl's columnar "
        "index (crawl=<name>/subset=warc/*.parquet), or 'remote' for the copy at "
        "commoncrawl_data_url: join the links with it instead (map/reduce, no lookups)"
    )
    commoncrawl_join_tasks: int = param(16, "map tasks of the columnar index join (index files are "
                                         "dealt out to them)", ge=1)
    commoncrawl_join_buffer_rows: int = param(
        500_000, "index rows a join map task holds before writing sorted runs (bounds its memory)", ge=1
    )
    commoncrawl_join_batch_rows: int = param(65_536, "index rows read at a time", ge=1)
    commoncrawl_join_bloom_mib: float = param(
        16.0, "size of the filter of the links' hosts that index rows pass before the shuffle", gt=0
    )

    def archives(self) -> list[str]:
        """``archive`` as an ordered list of archive names (empty for none)."""
        value = self.archive
        names = [value] if isinstance(value, str) else list(value or [])
        return [n for n in (str(n).strip().lower() for n in names) if n and n != "none"]

    def commoncrawl_join(self) -> bool:
        """Whether Common Crawl's captures come from the join with its columnar index."""
        return "commoncrawl" in self.archives() and bool(self.commoncrawl_index)

    def check(self) -> None:
        import ipaddress

        if not isinstance(self.archive, (str, list, tuple)) and self.archive is not None:
            raise ConfigError("archive", f"expected a name or a list of names, got {self.archive!r}")
        names = self.archives()
        for name in names:
            if name not in ARCHIVES:
                raise ConfigError("archive", f"unknown archive {name!r}; archives are none, "
                                  f"{', '.join(ARCHIVES)} or a list of them")
        if len(set(names)) != len(names):
            raise ConfigError("archive", f"names an archive twice: {names}")
        if "commoncrawl" in names and not self.commoncrawl_crawls:
            raise ConfigError("commoncrawl_crawls", "is empty: name the crawls to look in, e.g. "
                              "fetch.commoncrawl_crawls='[CC-MAIN-2017-13]' (index.commoncrawl.org "
                              "lists them)")
        for i, crawl in enumerate(self.commoncrawl_crawls):
            if not re.fullmatch(r"CC-MAIN-\d{4}(-\d{2,4})?", crawl):
                raise ConfigError(f"commoncrawl_crawls[{i}]", f"not a crawl name like CC-MAIN-2017-13: "
                                  f"{crawl!r}")

        for i, network in enumerate(self.allowed_networks):
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                raise ConfigError(f"allowed_networks[{i}]", f"not a network: {network!r}") from None
        for i, entry in enumerate(self.hosts):
            name, _, address = entry.partition("=")
            try:
                ipaddress.ip_address(address.strip())
            except ValueError:
                raise ConfigError(f"hosts[{i}]", f"not name=address: {entry!r}") from None
            self._check_host_name(f"hosts[{i}]", name.strip().lower().rstrip("."), entry)

    @staticmethod
    def _check_host_name(key: str, name: str, entry: str) -> None:
        """A ``hosts`` name: a host name, or ``*.suffix`` (a wildcard); none under ``.invalid``,
        which the guard never resolves (RFC 6761), whatever ``hosts`` says."""
        if not name:
            raise ConfigError(key, f"no host name in {entry!r}")
        suffix = name.removeprefix("*.")
        if "*" in suffix or not suffix.strip("."):
            raise ConfigError(key, f"a wildcard is '*.' and a domain, as in '*.test=127.0.0.1', "
                              f"not {entry!r}")
        if suffix.rpartition(".")[2] == "invalid":
            raise ConfigError(key, f"names under .invalid never resolve (RFC 6761): {entry!r}")

    def host_overrides(self) -> dict[str, str]:
        """``hosts`` as a mapping of lowercased name -> address."""
        pairs = (entry.partition("=") for entry in self.hosts)
        return {name.strip().lower().rstrip("."): address.strip() for name, _, address in pairs}


@dataclass
class ExtractConfig:
    """WARC responses -> documents: main text with trafilatura, language and quality filters."""

    favor_precision: bool = param(False, "trafilatura's favor_precision: less boilerplate, less text")
    include_comments: bool = param(False, "keep comment sections (off for bulk extraction)")
    include_tables: bool = param(False, "keep the text of tables")
    timeout_s: float = param(5.0, "a page whose extraction takes longer is abandoned (extract_timeout)",
                             gt=0)
    recycle_docs: int = param(500, "restart an extraction worker after this many pages (frees caches)",
                              ge=1)
    min_chars: int = param(200, "drop extractions shorter than this (too_short)", ge=0)
    min_tokens: int = param(128, "drop documents with fewer GPT-2 tokens (OpenWebText's rule)", ge=0)
    languages: list[str] | None = param(doc="ISO 639-1 codes kept; empty or null keeps every language",
                                        factory=lambda: ["en"])
    min_lang_score: float = param(0.5, "least language-ID probability to accept its language",
                                  ge=0, le=1)
    quality: str = param("off", "extra quality rules: off, or gopher (repetition, symbols, ...)",
                         choices=("off", "gopher"))


@dataclass
class DedupConfig:
    """Exact and MinHash-LSH near-duplicate removal over the documents."""

    num_perm: int = param(128, "MinHash permutations per signature", ge=16, le=1024)
    threshold: float = param(0.7, "Jaccard similarity of word n-gram sets above which documents are "
                             "near-duplicates", gt=0, lt=1)
    ngram: int = param(5, "words per shingle", ge=1, le=32)
    seed: int = param(1, "seed of datasketch's permutations (changes which pairs LSH finds)", ge=0)
    scheme: str = param("affine32", "datasketch permutation scheme (affine32: 32-bit values, its "
                        "default; affine64)", choices=("affine32", "affine64"))
    false_positive_weight: float = param(0.5, "weight of false positives when bands and rows are "
                                         "chosen (datasketch's optimum)", ge=0, le=1)
    false_negative_weight: float = param(0.5, "weight of false negatives in that choice", ge=0, le=1)
    verify: bool = param(False, "compute the true Jaccard of candidate pairs and drop those below "
                         "threshold (LSH false positives): two more passes")
    keep: str = param("earliest", "which document of a cluster survives: earliest (first submitted), "
                      "score (best Reddit score) or longest; ties by id",
                      choices=("earliest", "score", "longest"))
    bucket_ranges: int = param(4, "each band's buckets are split into this many hash ranges, one "
                               "task each: a task holds ~40 bytes x documents / bucket_ranges", ge=1)
    components_partitions: int = param(16, "partitions of the duplicate graph for connected "
                                       "components (memory per task ~ pairs / partitions)", ge=1)
    max_rounds: int = param(12, "rounds of label propagation; clusters whose documents are more "
                            "links apart than this are not merged, and the run stops saying so",
                            ge=1, le=99)

    def check(self) -> None:
        if self.false_positive_weight + self.false_negative_weight <= 0:
            raise ConfigError("false_positive_weight", "and false_negative_weight must not both be 0")


@dataclass
class PublishConfig:
    """The corpus as users get it: Parquet shards, manifest, dataset card, plots."""

    source: str = param("dedup", "stage whose documents are published: dedup, or extract to publish "
                        "without deduplication", choices=("dedup", "extract"))
    shard_mib: float = param(256.0, "Parquet shard size to aim for (MiB, compressed, on disk; estimated "
                             "from the inputs' compressed sizes, so shards land within some tens of "
                             "percent), whatever the number of partitions", gt=0)
    row_group_rows: int = param(1000, "documents per Parquet row group of a corpus shard (counted from "
                                "the shard's first document)", ge=1)
    jsonl: bool = param(False, "also write jsonl.zst shards in the lm_dataformat layout "
                        "({text, meta} per line), as OpenWebText2 ships")
    top_domains: int = param(50, "domains listed in the manifest and the card", ge=1)


@dataclass
class OverlapConfig:
    """How much of each evaluation set is in the corpus: the GPT-2 paper's n-gram overlap (Table 6),
    exact counts per set, per example and per corpus document; on request (``drop``), the documents
    that share drop_n-grams with a set left out at publish (docs/overlap.md)."""

    sets: list[str] = param(
        doc="evaluation sets as NAME=PATH: JSON lines or Parquet (the text in text_field), or plain "
        "text with one example a line; empty: nothing is measured", factory=list,
    )
    text_field: str = param("text", "field (JSON lines) or column (Parquet) holding an example's text")
    n: int = param(8, "words per n-gram, words being the lower-cased runs of [a-z0-9] (the paper: 8)",
                   ge=1)
    drop: bool = param(False, "decontaminate: publish leaves out of the corpus (so out of the tokens) "
                       "every document sharing at least min_ngrams distinct drop_n-grams with one of "
                       "the sets, counted as contaminated_<set>")
    drop_n: int = param(13, "words per n-gram when dropping (GPT-3's and lm-evaluation-harness's 13)",
                        ge=1)
    min_ngrams: int = param(1, "distinct drop_n-grams a document must share with one set to be dropped",
                            ge=1)

    def check(self) -> None:
        from pipeline.overlap.ngrams import parse_sets  # (numpy's import, only for this check)

        try:
            sets = parse_sets(self.sets)
        except ValueError as err:
            raise ConfigError("sets", str(err)) from None
        for i, (name, path) in enumerate(sets):
            if not Path(path).is_file():
                raise ConfigError(f"sets[{i}]", f"no such file: {path} (set {name})")
        if not self.text_field:
            raise ConfigError("text_field", "is empty: name the field holding an example's text")
        if self.drop and not sets:
            raise ConfigError("drop", "is true but overlap.sets is empty: name the evaluation sets to "
                              "decontaminate the corpus against")


@dataclass
class TokenizeConfig:
    """Corpus text to GPT-2 BPE token shards in llm.c's .bin format."""

    tasks: int = param(16, "tasks the stage is split into (each writes its own shards)", ge=1)
    input: str = param("corpus/*.parquet", "Parquet files to read: a glob, relative to workdir")
    text_column: str = param("text", "column holding the document text")
    id_column: str | None = param("id", "column whose hash picks the split; null hashes the text")
    val_fraction: float = param(0.005, "share of documents sent to val_*.bin", ge=0.0, lt=1.0)
    split_salt: str = param("webtext", "salt of the split hash; change it for another split")
    shard_tokens: int = param(
        100_000_000, "most tokens in one .bin shard (llm.c's header counts in int32)",
        ge=1, le=2**31 - 1,
    )
    batch_docs: int = param(1024, "documents encoded per tiktoken batch", ge=1)


# --- root ----------------------------------------------------------------------------------------


@dataclass
class PipelineConfig:
    workdir: str = param("work/pipeline", "root folder; each stage writes <workdir>/<stage>/")
    stages: list[str] = param(doc="stages to run, in data-flow order (default: the whole corpus flow)",
                              factory=lambda: ["links", "fetch", "extract", "dedup", "publish", "overlap",
                                               "tokenize"])
    executor: ExecutorConfig = param(MISSING, "where tasks run (config group executor/)")
    source: SourceConfig = param(MISSING, "where submissions come from (config group source/)")
    links: LinksConfig = param(doc="the links stage (config group links/)", factory=LinksConfig)
    fetch: FetchConfig = param(doc="the fetch stage", factory=FetchConfig)
    extract: ExtractConfig = param(doc="the extract stage", factory=ExtractConfig)
    dedup: DedupConfig = param(doc="the dedup stage", factory=DedupConfig)
    publish: PublishConfig = param(doc="the publish stage", factory=PublishConfig)
    overlap: OverlapConfig = param(doc="the overlap stage (evaluation sets in the corpus)",
                                   factory=OverlapConfig)
    tokenize: TokenizeConfig = param(doc="the tokenize stage", factory=TokenizeConfig)
    log_level: str = param("INFO", "logging level", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    train_after: str | None = param(
        None, "python -m train overrides, in one quoted string: submit sbatch slurm/train.sbatch with "
        "them once tokenize is done (under executor=slurm at once, with an afterok dependency on the "
        "tokenize job); data.dir defaults to <workdir>/tokens; null: no training job"
    )
    train_sbatch: str = param("", "sbatch options of the train_after job, in one quoted string, "
                              "e.g. --nodes=2 --gpus-per-node=8 --time=48:00:00")

    def check(self) -> None:
        if not self.stages:
            raise ConfigError("stages", "is empty: name at least one stage")
        for name in self.stages:
            if name not in STAGE_ORDER:
                raise ConfigError("stages", f"unknown stage {name!r}; stages are {list(STAGE_ORDER)}")
        order = [STAGE_ORDER.index(name) for name in self.stages]
        if order != sorted(set(order)):
            raise ConfigError(
                "stages", f"must be distinct and in data-flow order {list(STAGE_ORDER)}, "
                f"got {self.stages}",
            )


def register() -> None:
    """Register the schemas so the YAML in conf/ is composed onto them (and checked by Hydra)."""
    from hydra.core.config_store import ConfigStore  # here: workers import this module, not Hydra

    cs = ConfigStore.instance()
    # at the root, not in conf/'s groups (whose files name them: /links_schema@_here_), so no schema
    # is offered as a group option
    cs.store(name="pipeline_schema", node=PipelineConfig)
    cs.store(name="local_executor_schema", node=LocalExecutorConfig)
    cs.store(name="slurm_executor_schema", node=SlurmExecutorConfig)
    cs.store(name="pushshift_source_schema", node=PushshiftSourceConfig)
    cs.store(name="reddit_source_schema", node=RedditSourceConfig)
    cs.store(name="links_schema", node=LinksConfig)
    cs.store(group="hydra/help", name="pipeline", node=hydra_help("python -m pipeline", CONF, GROUPS))
