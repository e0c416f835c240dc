/* loadgen: the HTTPS load client of bench/proxy_bench.sh.
 *
 * wrk and h2load cannot speak HTTP CONNECT before TLS, and the bench must drive every
 * target (direct, egressguard, sslsplit, Squid) with the same client for the ratios to
 * mean anything, so this small blocking, thread-per-connection client does it all:
 *
 *   new        one GET per TLS connection (no session resumption: no tickets, no cache)
 *   keepalive  back-to-back GETs on long-lived connections
 *   idle       open N connections, one GET each, print READY, hold them, close
 *
 * It always verifies the server certificate against --cafile and the --sni name, so a
 * proxy that splices instead of decrypting (or forges for the wrong name) shows up as
 * errors, not as fast numbers.
 *
 * Output, one line: ok=N err=E secs=S rate=R p50_ms=A p99_ms=B [first_error=...]
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum mode { MODE_NEW, MODE_KEEPALIVE, MODE_IDLE };

static struct {
  enum mode mode;
  char connect_host[64];
  int connect_port;
  const char *tunnel; /* "host:port" for CONNECT, or NULL */
  const char *sni;
  const char *host_header;
  const char *cafile;
  const char *path;
  int conns;
  int threads;
  double seconds;
  double warmup;
  double hold;
} cfg = {.mode = MODE_KEEPALIVE, .path = "/1k", .conns = 16, .threads = 0, .seconds = 5, .warmup = 0.5, .hold = 3};

static SSL_CTX *ctx;
static char request[1024];
static size_t request_len;
static double t_start, t_measure, t_end;
static atomic_int first_error_set;
static char first_error[256];

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void note_error(const char *what) {
  if (atomic_exchange(&first_error_set, 1) == 0) {
    unsigned long e = ERR_peek_last_error();
    snprintf(first_error, sizeof first_error, "%s%s%s", what, e ? ":" : "", e ? ERR_reason_error_string(e) : "");
    for (char *p = first_error; *p; ++p)
      if (*p == ' ') *p = '_';
  }
  ERR_clear_error();
}

struct conn {
  int fd;
  SSL *ssl;
};

static void conn_close(struct conn *c) {
  if (c->ssl) {
    SSL_shutdown(c->ssl); /* send close_notify, do not wait for the peer's */
    SSL_free(c->ssl);
  }
  if (c->fd >= 0) close(c->fd);
  c->ssl = NULL;
  c->fd = -1;
}

/* TCP connect, CONNECT through the proxy when asked, TLS handshake with verification. */
static int conn_open(struct conn *c) {
  c->ssl = NULL;
  c->fd = socket(AF_INET, SOCK_STREAM, 0);
  if (c->fd < 0) return note_error("socket"), -1;
  int one = 1;
  setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  struct timeval tv = {.tv_sec = 30};
  setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(cfg.connect_port)};
  inet_pton(AF_INET, cfg.connect_host, &sa.sin_addr);
  if (connect(c->fd, (struct sockaddr *)&sa, sizeof sa) != 0) return note_error("connect"), conn_close(c), -1;
  if (cfg.tunnel) {
    char req[512];
    int n = snprintf(req, sizeof req, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", cfg.tunnel, cfg.tunnel);
    if (write(c->fd, req, n) != n) return note_error("connect_write"), conn_close(c), -1;
    /* Read byte by byte up to the blank line: nothing after it may be consumed, it is TLS. */
    char resp[2048];
    size_t got = 0;
    while (got < sizeof resp - 1) {
      ssize_t r = read(c->fd, resp + got, 1);
      if (r <= 0) return note_error("connect_eof"), conn_close(c), -1;
      got += (size_t)r;
      if (got >= 4 && memcmp(resp + got - 4, "\r\n\r\n", 4) == 0) break;
    }
    resp[got] = 0;
    if (strncmp(resp, "HTTP/1.1 200", 12) != 0 && strncmp(resp, "HTTP/1.0 200", 12) != 0)
      return note_error("connect_refused"), conn_close(c), -1;
  }
  c->ssl = SSL_new(ctx);
  SSL_set_fd(c->ssl, c->fd);
  SSL_set_tlsext_host_name(c->ssl, cfg.sni);
  SSL_set1_host(c->ssl, cfg.sni);
  if (SSL_connect(c->ssl) != 1) {
    long v = SSL_get_verify_result(c->ssl);
    note_error(v != X509_V_OK ? X509_verify_cert_error_string(v) : "handshake");
    conn_close(c);
    return -1;
  }
  return 0;
}

/* One GET; reads the head and exactly Content-Length body bytes. */
static int conn_get(struct conn *c) {
  if (SSL_write(c->ssl, request, (int)request_len) != (int)request_len) return note_error("write"), -1;
  static __thread char buf[65536];
  size_t have = 0;
  char *end = NULL;
  while (!end) {
    if (have == sizeof buf - 1) return note_error("head_too_long"), -1;
    int r = SSL_read(c->ssl, buf + have, (int)(sizeof buf - 1 - have));
    if (r <= 0) return note_error("read_head"), -1;
    have += (size_t)r;
    buf[have] = 0;
    end = strstr(buf, "\r\n\r\n");
  }
  if (strncmp(buf, "HTTP/1.1 200", 12) != 0 && strncmp(buf, "HTTP/1.0 200", 12) != 0) return note_error("status"), -1;
  char *cl = strcasestr(buf, "\r\ncontent-length:");
  if (!cl || cl > end) return note_error("no_content_length"), -1;
  long long want = atoll(cl + 17);
  long long body = (long long)have - (end + 4 - buf);
  while (body < want) {
    int r = SSL_read(c->ssl, buf, (int)sizeof buf);
    if (r <= 0) return note_error("read_body"), -1;
    body += r;
  }
  return body == want ? 0 : (note_error("body_overrun"), -1);
}

struct stats {
  long ok, err;
  uint32_t *lat_us; /* sampled latencies of measured requests */
  size_t n, cap;
};

static void record(struct stats *s, double t0, double t1) {
  if (t0 < t_measure || t1 > t_end) return; /* warmup or overrun */
  s->ok++;
  if (s->n == s->cap) {
    s->cap = s->cap ? s->cap * 2 : 4096;
    s->lat_us = realloc(s->lat_us, s->cap * sizeof *s->lat_us);
  }
  s->lat_us[s->n++] = (uint32_t)((t1 - t0) * 1e6);
}

static void *run_new(void *arg) {
  struct stats *s = arg;
  while (now() < t_end) {
    double t0 = now();
    struct conn c;
    if (conn_open(&c) != 0) {
      s->err++;
      continue;
    }
    int rc = conn_get(&c);
    conn_close(&c);
    if (rc == 0)
      record(s, t0, now());
    else
      s->err++;
  }
  return NULL;
}

static void *run_keepalive(void *arg) {
  struct stats *s = arg;
  struct conn c = {.fd = -1};
  while (now() < t_end) {
    if (c.fd < 0 && conn_open(&c) != 0) {
      s->err++;
      continue;
    }
    double t0 = now();
    if (conn_get(&c) == 0) {
      record(s, t0, now());
    } else {
      s->err++;
      conn_close(&c);
    }
  }
  conn_close(&c);
  return NULL;
}

struct idle_job {
  struct stats st;
  struct conn *conns;
  int count;
};

static void *run_idle_open(void *arg) {
  struct idle_job *j = arg;
  for (int i = 0; i < j->count; ++i) {
    if (conn_open(&j->conns[i]) != 0) {
      j->st.err++;
      continue;
    }
    if (conn_get(&j->conns[i]) != 0) {
      j->st.err++;
      conn_close(&j->conns[i]);
      continue;
    }
    j->st.ok++;
  }
  return NULL;
}

static int cmp_u32(const void *a, const void *b) {
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return x < y ? -1 : x > y;
}

static void usage(void) {
  fprintf(stderr,
          "usage: loadgen --mode new|keepalive|idle --connect IP:PORT [--tunnel HOST:PORT] --sni NAME\n"
          "               --host HOST:PORT --cafile PEM [--path /1k] [--conns N] [--threads N]\n"
          "               [--seconds S] [--warmup S] [--hold S]\n");
  exit(2);
}

int main(int argc, char **argv) {
  const char *connect_arg = NULL;
  for (int i = 1; i < argc; ++i) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!v) usage();
    if (!strcmp(a, "--mode")) {
      cfg.mode = !strcmp(v, "new") ? MODE_NEW : !strcmp(v, "idle") ? MODE_IDLE : MODE_KEEPALIVE;
      if (strcmp(v, "new") && strcmp(v, "idle") && strcmp(v, "keepalive")) usage();
    } else if (!strcmp(a, "--connect")) connect_arg = v;
    else if (!strcmp(a, "--tunnel")) cfg.tunnel = v;
    else if (!strcmp(a, "--sni")) cfg.sni = v;
    else if (!strcmp(a, "--host")) cfg.host_header = v;
    else if (!strcmp(a, "--cafile")) cfg.cafile = v;
    else if (!strcmp(a, "--path")) cfg.path = v;
    else if (!strcmp(a, "--conns")) cfg.conns = atoi(v);
    else if (!strcmp(a, "--threads")) cfg.threads = atoi(v);
    else if (!strcmp(a, "--seconds")) cfg.seconds = atof(v);
    else if (!strcmp(a, "--warmup")) cfg.warmup = atof(v);
    else if (!strcmp(a, "--hold")) cfg.hold = atof(v);
    else usage();
    ++i;
  }
  if (!connect_arg || !cfg.sni || !cfg.host_header || !cfg.cafile || cfg.conns < 1) usage();
  const char *colon = strrchr(connect_arg, ':');
  if (!colon || (size_t)(colon - connect_arg) >= sizeof cfg.connect_host) usage();
  memcpy(cfg.connect_host, connect_arg, (size_t)(colon - connect_arg));
  cfg.connect_port = atoi(colon + 1);

  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }

  ctx = SSL_CTX_new(TLS_client_method());
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  /* No resumption: every new connection pays the full handshake on every hop. */
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
  static const unsigned char alpn[] = "\x08http/1.1";
  SSL_CTX_set_alpn_protos(ctx, alpn, sizeof alpn - 1);
  if (SSL_CTX_load_verify_locations(ctx, cfg.cafile, NULL) != 1) {
    fprintf(stderr, "loadgen: cannot load %s\n", cfg.cafile);
    return 2;
  }
  request_len = (size_t)snprintf(request, sizeof request, "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: egressguard-bench\r\n%s\r\n",
                                 cfg.path, cfg.host_header, cfg.mode == MODE_NEW ? "Connection: close\r\n" : "");

  if (cfg.mode == MODE_IDLE) {
    int threads = cfg.threads > 0 ? cfg.threads : 8;
    struct conn *all = calloc((size_t)cfg.conns, sizeof *all);
    struct idle_job *jobs = calloc((size_t)threads, sizeof *jobs);
    pthread_t *tids = calloc((size_t)threads, sizeof *tids);
    t_measure = 0;
    t_end = 1e18;
    int per = cfg.conns / threads, extra = cfg.conns % threads, at = 0;
    for (int t = 0; t < threads; ++t) {
      jobs[t].conns = all + at;
      jobs[t].count = per + (t < extra);
      at += jobs[t].count;
      pthread_create(&tids[t], NULL, run_idle_open, &jobs[t]);
    }
    long ok = 0, err = 0;
    for (int t = 0; t < threads; ++t) {
      pthread_join(tids[t], NULL);
      ok += jobs[t].st.ok;
      err += jobs[t].st.err;
    }
    printf("READY ok=%ld err=%ld%s%s\n", ok, err, first_error_set ? " first_error=" : "", first_error_set ? first_error : "");
    fflush(stdout);
    struct timespec hold = {.tv_sec = (time_t)cfg.hold, .tv_nsec = (long)((cfg.hold - (time_t)cfg.hold) * 1e9)};
    nanosleep(&hold, NULL);
    for (int i = 0; i < cfg.conns; ++i)
      if (all[i].fd >= 0 && all[i].ssl) conn_close(&all[i]);
    printf("DONE\n");
    return err ? 1 : 0;
  }

  int n = cfg.conns;
  struct stats *st = calloc((size_t)n, sizeof *st);
  pthread_t *tids = calloc((size_t)n, sizeof *tids);
  t_start = now();
  t_measure = t_start + cfg.warmup;
  t_end = t_measure + cfg.seconds;
  for (int t = 0; t < n; ++t)
    pthread_create(&tids[t], NULL, cfg.mode == MODE_NEW ? run_new : run_keepalive, &st[t]);
  long ok = 0, err = 0;
  size_t total = 0;
  for (int t = 0; t < n; ++t) {
    pthread_join(tids[t], NULL);
    ok += st[t].ok;
    err += st[t].err;
    total += st[t].n;
  }
  uint32_t *lat = malloc((total ? total : 1) * sizeof *lat);
  size_t k = 0;
  for (int t = 0; t < n; ++t) {
    memcpy(lat + k, st[t].lat_us, st[t].n * sizeof *lat);
    k += st[t].n;
  }
  qsort(lat, total, sizeof *lat, cmp_u32);
  double p50 = total ? lat[total / 2] / 1000.0 : 0, p99 = total ? lat[(size_t)(total * 0.99)] / 1000.0 : 0;
  printf("ok=%ld err=%ld secs=%.3f rate=%.1f p50_ms=%.3f p99_ms=%.3f%s%s\n", ok, err, cfg.seconds, ok / cfg.seconds, p50,
         p99, first_error_set ? " first_error=" : "", first_error_set ? first_error : "");
  return ok > 0 ? 0 : 1;
}
