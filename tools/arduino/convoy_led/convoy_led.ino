// Convoy LED strip controller firmware (ATmega328P: Uno / Nano, 16 MHz).
//
// Speaks the Convoy LED protocol (docs/led-protocol.md) on the USB serial
// port at 115200 baud: checksummed text lines with sequence numbers and
// acks, plus COBS/CRC-8 binary frames for band/beat streams, and drives a
// WS2812 strip on pin D6 with the pattern library that src/led/patterns.rs
// mirrors. With no host message for 5 s (after boot or a lost link) it shows
// the default pattern (rainbow) on its own; the host's state is kept and
// comes back with the next host message.
//
// No external libraries: Debian packages neither FastLED nor Adafruit
// NeoPixel, so a small inline-asm WS2812 driver (ws2812_send) is included.

#include <Arduino.h>
#include <avr/pgmspace.h>
#include <avr/sleep.h>
#include <string.h>

#define FW_VERSION "0.1.0"
#define PROTOCOL_VERSION 1
#ifndef NUM_LEDS
#define NUM_LEDS 60
#endif
#define BAUD 115200UL

// WS2812 data pin: D6 = PD6.
#define WS_PORT PORTD
#define WS_DDR DDRD
#define WS_BIT 6

#define MAX_LINE_LEN 64
#define MAX_FRAME_LEN 32
#define MAX_PAYLOAD_LEN 16
#define MAX_RAW_FRAME_LEN (MAX_PAYLOAD_LEN + 3)
#define FRAME_ACK_REQUEST 0x80

#define AUTONOMY_TIMEOUT_MS 5000UL
#define BINARY_TIMEOUT_MS 1000UL
#define FRAME_GAP_MS 50UL
#define FRAME_INTERVAL_MS 20UL
#define RX_QUIET_MS 2UL
#define MAX_SHOW_DELAY_MS 100UL

enum { FT_BANDS3 = 1, FT_BANDS16 = 2, FT_BEAT = 3, FT_STATE = 4, FT_EXIT = 5, FT_PING = 6, FT_ACK = 0x10 };
enum { E_OK = 0, E_CHECKSUM = 1, E_UNKNOWN = 2, E_ARGUMENT = 3, E_TOO_LONG = 4, E_FRAME = 5, E_MODE = 6 };
enum { P_OFF, P_SOLID, P_RAINBOW, P_PULSE, P_STROBE, P_CHASE, P_SPARKLE, P_VU, P_BEATFLASH, P_COUNT };

static const char pn0[] PROGMEM = "off";
static const char pn1[] PROGMEM = "solid";
static const char pn2[] PROGMEM = "rainbow";
static const char pn3[] PROGMEM = "pulse";
static const char pn4[] PROGMEM = "strobe";
static const char pn5[] PROGMEM = "chase";
static const char pn6[] PROGMEM = "sparkle";
static const char pn7[] PROGMEM = "vu";
static const char pn8[] PROGMEM = "beatflash";
static const char *const pattern_names[P_COUNT] PROGMEM = {pn0, pn1, pn2, pn3, pn4, pn5, pn6, pn7, pn8};

struct Rgb {
  uint8_t r, g, b;
};

struct Show {
  uint8_t pattern, hue, bright, speed;
  Rgb color;
  uint8_t bands[16];
  uint8_t num_bands;
  uint8_t has_beat;
  uint32_t beat_at;
  uint8_t beat_in_bar, beat_strength;
};

static Show show;
static uint8_t leds[NUM_LEDS * 3];  // GRB, wire order

enum { S_IDLE, S_LINE, S_SKIP_LINE, S_FRAME, S_SKIP_FRAME };
static uint8_t rx_state = S_IDLE;
static uint8_t rx_buf[MAX_LINE_LEN + 1];
static uint8_t rx_len = 0;

static uint8_t binary_mode = 0;
static uint32_t last_host_ms = 0;
static uint32_t last_frame_ms = 0;
static uint32_t last_rx_ms = 0;
static uint32_t last_show_ms = 0;

// ---------------------------------------------------------------------------
// WS2812 driver: 800 kHz at F_CPU = 16 MHz, 20 cycles per bit.
// 0-bit: high 6 cycles (375 ns); 1-bit: high 13 cycles (812 ns).
// Interrupts are off while sending (~30 us per LED).

static void ws2812_send(const uint8_t *data, uint16_t len) {
  uint8_t hi = WS_PORT | _BV(WS_BIT);
  uint8_t lo = WS_PORT & ~_BV(WS_BIT);
  uint8_t sreg = SREG;
  cli();
  while (len--) {
    uint8_t b = *data++;
    uint8_t cnt = 8;
    asm volatile(
        "1:                  \n\t"
        "out %[port], %[hi]  \n\t"  // 0: rise
        "nop \n\t nop \n\t nop \n\t nop \n\t"
        "sbrs %[byte], 7     \n\t"  // 5
        "out %[port], %[lo]  \n\t"  // 6: fall for a 0-bit
        "lsl %[byte]         \n\t"  // 7
        "nop \n\t nop \n\t nop \n\t nop \n\t nop \n\t"
        "out %[port], %[lo]  \n\t"  // 13: fall for a 1-bit
        "nop \n\t nop \n\t nop \n\t"
        "dec %[cnt]          \n\t"  // 17
        "brne 1b             \n\t"  // 18-19
        : [byte] "+r"(b), [cnt] "+r"(cnt)
        : [port] "I"(_SFR_IO_ADDR(WS_PORT)), [hi] "r"(hi), [lo] "r"(lo));
  }
  SREG = sreg;
  // >= 50 us low latches the data; the caller does not show faster than that.
}

// ---------------------------------------------------------------------------
// Pattern maths: mirror of src/led/patterns.rs. Keep the two in step.

static uint8_t scale8(uint8_t v, uint8_t s) { return ((uint16_t)v * ((uint16_t)s + 1)) >> 8; }

static Rgb scale_rgb(Rgb c, uint8_t s) {
  Rgb o = {scale8(c.r, s), scale8(c.g, s), scale8(c.b, s)};
  return o;
}

static uint8_t tri8(uint8_t x) { return x < 128 ? (uint8_t)(x << 1) : (uint8_t)(255 - ((x - 128) << 1)); }

static Rgb hsv(uint8_t h, uint8_t s, uint8_t v) {
  Rgb o;
  if (s == 0) {
    o.r = o.g = o.b = v;
    return o;
  }
  uint8_t region = h / 43;
  uint16_t rem = (uint16_t)(h - region * 43) * 6;
  uint16_t s16 = s, v16 = v;
  uint8_t p = (v16 * (255 - s16)) >> 8;
  uint8_t q = (v16 * (255 - ((s16 * rem) >> 8))) >> 8;
  uint8_t t = (v16 * (255 - ((s16 * (255 - rem)) >> 8))) >> 8;
  switch (region) {
    case 0: o.r = v; o.g = t; o.b = p; break;
    case 1: o.r = q; o.g = v; o.b = p; break;
    case 2: o.r = p; o.g = v; o.b = t; break;
    case 3: o.r = p; o.g = q; o.b = v; break;
    case 4: o.r = t; o.g = p; o.b = v; break;
    default: o.r = v; o.g = p; o.b = q; break;
  }
  return o;
}

static uint8_t phase(uint32_t t, uint8_t speed, uint8_t shift) {
  return (uint8_t)((t * ((uint32_t)speed + 1)) >> shift);
}

static uint16_t hash16(uint16_t i, uint16_t frame) {
  uint16_t x = (uint16_t)(i * 40503u) ^ (uint16_t)(frame * 2473u);
  x ^= x >> 7;
  x = (uint16_t)(x * 0x2F5Bu);
  return x ^ (x >> 9);
}

static Rgb pixel(uint8_t pattern, uint32_t t, uint16_t i, uint16_t n) {
  Rgb black = {0, 0, 0};
  if (n == 0) n = 1;
  switch (pattern) {
    case P_SOLID:
      return show.color;
    case P_RAINBOW:
      return hsv((uint8_t)(show.hue + phase(t, show.speed, 6) + (uint8_t)((uint32_t)i * 256 / n)), 255, 255);
    case P_PULSE:
      return scale_rgb(show.color, tri8(phase(t, show.speed, 5)));
    case P_STROBE:
      return phase(t, show.speed, 4) < 48 ? show.color : black;
    case P_CHASE: {
      uint32_t pos = ((t * ((uint32_t)show.speed + 1)) >> 12) % n;
      uint32_t width = n / 6;
      if (width < 2) width = 2;
      uint32_t d = (pos + n - i) % n;
      if (d < width) return scale_rgb(show.color, (uint8_t)(255 - d * 255 / width));
      return black;
    }
    case P_SPARKLE: {
      uint16_t frame = (uint16_t)((t * ((uint32_t)show.speed + 1)) >> 12);
      return (hash16(i, frame) & 15) == 0 ? show.color : scale_rgb(show.color, 12);
    }
    case P_VU: {
      uint32_t nb = show.num_bands;
      if (nb < 1) nb = 1;
      if (nb > 16) nb = 16;
      if (nb > n) nb = n;
      uint32_t band = (uint32_t)i * nb / n;
      uint32_t seg_start = band * n / nb;
      uint32_t seg_len = (band + 1) * n / nb - seg_start;
      if (seg_len < 1) seg_len = 1;
      uint32_t j = i - seg_start;
      uint32_t level = show.bands[band];
      if (j * 255 < level * seg_len) return hsv((uint8_t)(show.hue + (uint8_t)(96 - j * 96 / seg_len)), 255, 255);
      return black;
    }
    case P_BEATFLASH: {
      if (!show.has_beat) return black;
      uint32_t since = t - show.beat_at;
      uint32_t decay = (since * ((uint32_t)show.speed + 1)) >> 6;
      if (decay > 255) decay = 255;
      uint8_t v = scale8(255 - (uint8_t)decay, show.beat_strength);
      uint8_t sat = show.beat_in_bar == 0 ? 128 : 255;
      return hsv((uint8_t)(show.hue + (uint8_t)(show.beat_in_bar * 64)), sat, v);
    }
    default:
      return black;
  }
}

static void render_and_show(uint32_t now) {
  uint8_t pattern = (now - last_host_ms >= AUTONOMY_TIMEOUT_MS) ? P_RAINBOW : show.pattern;
  for (uint16_t i = 0; i < NUM_LEDS; i++) {
    Rgb c = scale_rgb(pixel(pattern, now, i, NUM_LEDS), show.bright);
    leds[i * 3] = c.g;
    leds[i * 3 + 1] = c.r;
    leds[i * 3 + 2] = c.b;
  }
  ws2812_send(leds, sizeof(leds));
  last_show_ms = now;
}

// Show a frame now if one is due. Called before sending an ack: the host
// sends its next acked command only after the ack, so the ~2 ms with
// interrupts off never overlaps incoming bytes.
static void show_if_due(uint32_t now) {
  if (now - last_show_ms >= FRAME_INTERVAL_MS) render_and_show(now);
}

// ---------------------------------------------------------------------------
// Checksums, COBS, replies

static uint8_t crc8(const uint8_t *p, uint8_t n) {
  uint8_t crc = 0;
  while (n--) {
    crc ^= *p++;
    for (uint8_t k = 0; k < 8; k++) crc = (crc & 0x80) ? (uint8_t)((crc << 1) ^ 0x07) : (uint8_t)(crc << 1);
  }
  return crc;
}

static uint8_t hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return 0xFF;
}

static const char HEX_DIGITS[] PROGMEM = "0123456789ABCDEF";

// Sends `text` (NUL-terminated, RAM) + "*XX\n".
static void send_line(const char *text) {
  uint8_t sum = 0;
  for (const char *p = text; *p; p++) sum ^= (uint8_t)*p;
  Serial.write(text);
  Serial.write('*');
  Serial.write(pgm_read_byte(&HEX_DIGITS[sum >> 4]));
  Serial.write(pgm_read_byte(&HEX_DIGITS[sum & 15]));
  Serial.write('\n');
}

static char *put_u16(char *p, uint16_t v) {
  char tmp[6];
  uint8_t n = 0;
  do {
    tmp[n++] = '0' + v % 10;
    v /= 10;
  } while (v);
  while (n) *p++ = tmp[--n];
  *p = 0;
  return p;
}

static char *put_seq(char *p, int16_t seq) {
  if (seq >= 0) {
    *p++ = '#';
    p = put_u16(p, (uint16_t)seq);
  }
  return p;
}

static void send_ok(int16_t seq) {
  char buf[8] = "OK";
  if (seq >= 0) {
    buf[2] = ' ';
    put_u16(buf + 3, (uint16_t)seq);
  }
  send_line(buf);
}

static void send_err(uint8_t code, const char *text_P, int16_t seq) {
  char buf[MAX_LINE_LEN];
  char *p = buf;
  strcpy_P(p, PSTR("ERR "));
  p = put_u16(p + 4, code);
  *p++ = ' ';
  strncpy_P(p, text_P, 40);
  p[40] = 0;
  p += strlen(p);
  put_seq(p, seq);
  send_line(buf);
}

static void send_banner(int16_t seq) {
  char buf[MAX_LINE_LEN];
  char *p = buf;
  strcpy_P(p, PSTR("CONVOY-LED " FW_VERSION " "));
  p += strlen(p);
  p = put_u16(p, PROTOCOL_VERSION);
  *p++ = ' ';
  p = put_u16(p, NUM_LEDS);
  put_seq(p, seq);
  send_line(buf);
}

static void send_ack_frame(uint8_t seq, uint8_t status) {
  uint8_t raw[4] = {FT_ACK, seq, status, 0};
  raw[3] = crc8(raw, 3);
  // COBS encode 4 bytes (at most 5 out).
  uint8_t out[6];
  uint8_t code_pos = 0, n = 1, code = 1;
  for (uint8_t i = 0; i < 4; i++) {
    if (raw[i] == 0) {
      out[code_pos] = code;
      code_pos = n++;
      code = 1;
    } else {
      out[n++] = raw[i];
      code++;
    }
  }
  out[code_pos] = code;
  Serial.write((uint8_t)0);
  Serial.write(out, n);
  Serial.write((uint8_t)0);
}

// ---------------------------------------------------------------------------
// Command handling

// Strict decimal 0..255 (1-5 digits, like the host codec).
static bool parse_u8(const char *s, uint8_t *out) {
  uint8_t n = 0;
  uint32_t v = 0;
  if (!*s) return false;
  while (*s) {
    if (*s < '0' || *s > '9' || ++n > 5) return false;
    v = v * 10 + (*s++ - '0');
  }
  if (v > 255) return false;
  *out = (uint8_t)v;
  return true;
}

// Parses exactly `n` comma-separated values.
static bool parse_list(char *s, uint8_t *out, uint8_t n) {
  if (!s) return false;
  for (uint8_t k = 0; k < n; k++) {
    char *comma = strchr(s, ',');
    if (k + 1 < n) {
      if (!comma) return false;
      *comma = 0;
    } else if (comma) {
      return false;
    }
    if (!parse_u8(s, &out[k])) return false;
    s = comma ? comma + 1 : s;
  }
  return true;
}

static int8_t find_pattern(const char *name) {
  for (uint8_t k = 0; k < P_COUNT; k++) {
    if (strcasecmp_P(name, (const char *)pgm_read_word(&pattern_names[k])) == 0) return k;
  }
  return -1;
}

static void apply_state(const uint8_t *v) {  // pattern, hue, bright, speed, r, g, b
  show.pattern = v[0];
  show.hue = v[1];
  show.bright = v[2];
  show.speed = v[3];
  show.color.r = v[4];
  show.color.g = v[5];
  show.color.b = v[6];
}

static void set_beat(uint8_t beat_in_bar, uint8_t strength, uint32_t now) {
  show.has_beat = 1;
  show.beat_at = now;
  show.beat_in_bar = beat_in_bar;
  show.beat_strength = strength;
}

static void handle_line(char *line, uint8_t len, uint32_t now) {
  for (uint8_t k = 0; k < len; k++) {
    if ((uint8_t)line[k] < 0x20 || (uint8_t)line[k] > 0x7E) {
      send_err(E_ARGUMENT, PSTR("not printable"), -1);
      return;
    }
  }
  line[len] = 0;
  char *star = strrchr(line, '*');
  if (star) {
    if (strlen(star + 1) != 2 || hexval(star[1]) > 15 || hexval(star[2]) > 15) {
      send_err(E_CHECKSUM, PSTR("bad checksum syntax"), -1);
      return;
    }
    uint8_t want = (hexval(star[1]) << 4) | hexval(star[2]);
    uint8_t sum = 0;
    for (char *p = line; p < star; p++) sum ^= (uint8_t)*p;
    if (sum != want) {
      send_err(E_CHECKSUM, PSTR("checksum mismatch"), -1);
      return;
    }
    *star = 0;
  }
  int16_t seq = -1;
  char *hash = strrchr(line, '#');
  if (hash) {
    uint8_t s;
    if (!parse_u8(hash + 1, &s)) {
      send_err(E_ARGUMENT, PSTR("bad sequence number"), -1);
      return;
    }
    seq = s;
    *hash = 0;
  }
  for (int16_t k = (int16_t)strlen(line) - 1; k >= 0 && line[k] == ' '; k--) line[k] = 0;
  char *args = strchr(line, ':');
  if (args) *args++ = 0;

  // Any valid line is host activity and ends binary mode.
  binary_mode = 0;
  last_host_ms = now;
  uint8_t v[7];
  bool ok = true;

  if (strcasecmp_P(line, PSTR("HELLO")) == 0) {
    if (!args || !parse_u8(args, v)) ok = false;
    else {
      show_if_due(now);
      send_banner(seq);
      return;
    }
  } else if (strcasecmp_P(line, PSTR("PING")) == 0) {
    ok = !args;
  } else if (strcasecmp_P(line, PSTR("PATTERN")) == 0) {
    int8_t p = args ? find_pattern(args) : -1;
    if (p < 0) ok = false;
    else show.pattern = (uint8_t)p;
  } else if (strcasecmp_P(line, PSTR("HUE")) == 0) {
    ok = args && parse_u8(args, &show.hue);
  } else if (strcasecmp_P(line, PSTR("BRIGHT")) == 0) {
    ok = args && parse_u8(args, &show.bright);
  } else if (strcasecmp_P(line, PSTR("SPEED")) == 0) {
    ok = args && parse_u8(args, &show.speed);
  } else if (strcasecmp_P(line, PSTR("COLOR")) == 0) {
    if ((ok = parse_list(args, v, 3))) {
      show.color.r = v[0];
      show.color.g = v[1];
      show.color.b = v[2];
    }
  } else if (strcasecmp_P(line, PSTR("BEAT")) == 0) {
    if (!args) set_beat(0, 255, now);
    else if ((ok = parse_list(args, v, 2))) set_beat(v[0], v[1], now);
  } else if (strcasecmp_P(line, PSTR("BANDS")) == 0) {
    if ((ok = parse_list(args, v, 3))) {
      memcpy(show.bands, v, 3);
      show.num_bands = 3;
    }
  } else if (strcasecmp_P(line, PSTR("STATE")) == 0) {
    char *comma = args ? strchr(args, ',') : 0;
    int8_t p = -1;
    if (comma) {
      *comma = 0;
      p = find_pattern(args);
    }
    if (p < 0 || !parse_list(comma + 1, v + 1, 6)) ok = false;
    else {
      v[0] = (uint8_t)p;
      apply_state(v);
    }
  } else if (strcasecmp_P(line, PSTR("BINARY")) == 0) {
    if ((ok = !args)) {
      binary_mode = 1;
      last_frame_ms = now;
    }
  } else if (strcasecmp_P(line, PSTR("EXIT")) == 0) {
    ok = !args;
  } else {
    send_err(E_UNKNOWN, PSTR("unknown command"), seq);
    return;
  }
  if (!ok) {
    send_err(E_ARGUMENT, PSTR("bad argument"), seq);
    return;
  }
  show_if_due(now);
  send_ok(seq);
}

static void handle_frame(const uint8_t *enc, uint8_t len, uint32_t now) {
  uint8_t raw[MAX_RAW_FRAME_LEN];
  uint8_t n = 0, i = 0;
  // COBS decode; any malformed or oversized frame is dropped silently.
  while (i < len) {
    uint8_t code = enc[i++];
    for (uint8_t k = 1; k < code; k++) {
      if (i >= len || n >= sizeof(raw)) return;
      raw[n++] = enc[i++];
    }
    if (code != 0xFF && i < len) {
      if (n >= sizeof(raw)) return;
      raw[n++] = 0;
    }
  }
  if (n < 3 || crc8(raw, n - 1) != raw[n - 1]) return;
  uint8_t kind = raw[0] & 0x7F, ack = raw[0] & FRAME_ACK_REQUEST, seq = raw[1];
  const uint8_t *p = raw + 2;
  uint8_t plen = n - 3;
  if (!binary_mode) {
    send_ack_frame(seq, E_MODE);
    return;
  }
  last_frame_ms = now;
  last_host_ms = now;
  uint8_t status = E_OK;
  switch (kind) {
    case FT_BANDS3:
      if (plen != 3) status = E_ARGUMENT;
      else {
        memcpy(show.bands, p, 3);
        show.num_bands = 3;
      }
      break;
    case FT_BANDS16:
      if (plen != 16) status = E_ARGUMENT;
      else {
        memcpy(show.bands, p, 16);
        show.num_bands = 16;
      }
      break;
    case FT_BEAT:
      if (plen != 2) status = E_ARGUMENT;
      else set_beat(p[0], p[1], now);
      break;
    case FT_STATE:
      if (plen != 7 || p[0] >= P_COUNT) status = E_ARGUMENT;
      else apply_state(p);
      break;
    case FT_EXIT:
      if (plen != 0) status = E_ARGUMENT;
      else binary_mode = 0;
      break;
    case FT_PING:
      if (plen != 0) status = E_ARGUMENT;
      break;
    default:
      status = E_UNKNOWN;
  }
  if (ack) {
    show_if_due(now);
    send_ack_frame(seq, status);
  }
}

// Byte-level framing: the same state machine as protocol::Decoder.
static void feed(uint8_t c, uint32_t now) {
  switch (rx_state) {
    case S_IDLE:
      if (c == 0) {
        rx_state = S_FRAME;
        rx_len = 0;
      } else if (c != '\n' && c != '\r') {
        rx_state = S_LINE;
        rx_buf[0] = c;
        rx_len = 1;
      }
      break;
    case S_LINE:
      if (c == '\n') {
        rx_state = S_IDLE;
        handle_line((char *)rx_buf, rx_len, now);
      } else if (c == 0) {
        rx_state = S_FRAME;
        rx_len = 0;
        send_err(E_ARGUMENT, PSTR("line cut by frame"), -1);
      } else if (c != '\r') {
        if (rx_len >= MAX_LINE_LEN) {
          rx_state = S_SKIP_LINE;
          send_err(E_TOO_LONG, PSTR("line too long"), -1);
        } else {
          rx_buf[rx_len++] = c;
        }
      }
      break;
    case S_SKIP_LINE:
    case S_SKIP_FRAME:
      if (c == '\n') rx_state = S_IDLE;
      else if (c == 0) {
        rx_state = S_FRAME;
        rx_len = 0;
      }
      break;
    case S_FRAME:
      if (c == 0) {
        if (rx_len > 0) {
          rx_state = S_IDLE;
          handle_frame(rx_buf, rx_len, now);
        }
      } else if (rx_len >= MAX_FRAME_LEN) {
        rx_state = S_SKIP_FRAME;
      } else {
        rx_buf[rx_len++] = c;
      }
      break;
  }
}

// ---------------------------------------------------------------------------

void setup() {
  WS_DDR |= _BV(WS_BIT);
  WS_PORT &= ~_BV(WS_BIT);
  show.pattern = P_RAINBOW;
  show.hue = 0;
  show.bright = 128;
  show.speed = 64;
  show.color.r = show.color.g = show.color.b = 255;
  show.num_bands = 3;
  Serial.begin(BAUD);
  send_banner(-1);
  last_host_ms = 0;
  last_show_ms = millis();
}

void loop() {
  uint32_t now = millis();
  while (Serial.available() > 0) {
    uint8_t c = (uint8_t)Serial.read();
    now = millis();
    last_rx_ms = now;
    feed(c, now);
  }
  if ((rx_state == S_FRAME || rx_state == S_SKIP_FRAME) && now - last_rx_ms >= FRAME_GAP_MS) rx_state = S_IDLE;
  if (binary_mode && now - last_frame_ms >= BINARY_TIMEOUT_MS) binary_mode = 0;

  uint32_t since_show = now - last_show_ms;
  if (since_show >= FRAME_INTERVAL_MS) {
    bool quiet = rx_state == S_IDLE && now - last_rx_ms >= RX_QUIET_MS;
    if (quiet || since_show >= MAX_SHOW_DELAY_MS) render_and_show(now);
  }

  // Sleep until the next interrupt (timer0 tick every ~1 ms or a UART byte).
  set_sleep_mode(SLEEP_MODE_IDLE);
  cli();
  if (Serial.available() == 0) {
    // Harmless on hardware; in simavr, reading UCSR0A with an empty RX FIFO
    // is what re-opens its UART flow control (XON) after a burst filled it.
    (void)UCSR0A;
    sleep_enable();
    sei();
    sleep_cpu();
    sleep_disable();
  }
  sei();
}
