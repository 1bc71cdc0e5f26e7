/*
 * simrun: run the Convoy LED firmware ELF in simavr (ATmega328P, 16 MHz)
 * with UART0 bridged to a pseudo-terminal, for firmware-in-the-loop tests.
 *
 *   simrun firmware.elf [link-path]
 *
 * Prints "PTY <slave path>" on stdout once the UART is connected, and if
 * link-path is given makes it a symlink to the pty (removed on exit).
 * Then, every simulated second while bytes move, one line
 * "UART rx <lines> <frames> tx <lines> <frames>": text lines ('\n') and
 * binary frames (0x00 delimiters) the firmware received from the host and
 * sent back (its acks), counted at the simulated UART, so tests see that
 * the host kept driving the controller. Runs until SIGTERM/SIGINT.
 *
 * The bridge is done here, in the simulation thread, instead of with
 * simavr's parts/uart_pty: in Debian's simavr 1.6 uart_pty deadlocks as
 * soon as one pty read (up to 511 bytes) does not fit its FIFO (the select()
 * timeout path `continue`s and never moves the leftover bytes), and it
 * raises AVR IRQs from a second thread. This bridge feeds bytes only while
 * the simulated UART signals XON, from the same thread that runs the core.
 *
 * Build: gcc simrun.c -o simrun -I/usr/include/simavr -lsimavr -lutil
 */
#include <errno.h>
#include <fcntl.h>
#include <pty.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "avr_uart.h"
#include "sim_avr.h"
#include "sim_elf.h"
#include "sim_irq.h"

static volatile sig_atomic_t stop_requested;
static int xon = 1;              /* simulated UART has room for input */
static uint8_t outbuf[8192];     /* AVR -> host bytes not yet written */
static size_t outlen;
/* Lines and frames through the UART: host -> AVR (rx), AVR -> host (tx). */
static unsigned long rx_lines, rx_frames, tx_lines, tx_frames;

static void count(uint8_t b, unsigned long *lines, unsigned long *frames) {
	if (b == '\n')
		++*lines;
	else if (b == 0)
		++*frames;
}

static void on_signal(int sig) {
	(void)sig;
	stop_requested = 1;
}

static void on_uart_out(struct avr_irq_t *irq, uint32_t value, void *param) {
	(void)irq; (void)param;
	count((uint8_t)value, &tx_lines, &tx_frames);
	if (outlen < sizeof(outbuf))
		outbuf[outlen++] = (uint8_t)value;
}

static void on_xon(struct avr_irq_t *irq, uint32_t value, void *param) {
	(void)irq; (void)value; (void)param;
	xon = 1;
}

static void on_xoff(struct avr_irq_t *irq, uint32_t value, void *param) {
	(void)irq; (void)param;
	if (value)
		xon = 0;
}

int main(int argc, char **argv) {
	if (argc < 2) {
		fprintf(stderr, "usage: %s firmware.elf [pty-link]\n", argv[0]);
		return 2;
	}
	const char *link_path = argc > 2 ? argv[2] : NULL;
	elf_firmware_t fw;
	memset(&fw, 0, sizeof(fw));
	if (elf_read_firmware(argv[1], &fw) != 0) {
		fprintf(stderr, "simrun: cannot read ELF %s\n", argv[1]);
		return 1;
	}
	strcpy(fw.mmcu, "atmega328p");
	fw.frequency = 16000000;
	avr_t *avr = avr_make_mcu_by_name(fw.mmcu);
	if (!avr) {
		fprintf(stderr, "simrun: simavr does not know %s\n", fw.mmcu);
		return 1;
	}
	avr_init(avr);
	avr_load_firmware(avr, &fw);
	avr->log = LOG_ERROR;

	int master, slave;
	char slavename[256];
	if (openpty(&master, &slave, slavename, NULL, NULL) < 0) {
		perror("simrun: openpty");
		return 1;
	}
	struct termios tio;
	tcgetattr(master, &tio);
	cfmakeraw(&tio);
	tcsetattr(master, TCSANOW, &tio);
	fcntl(master, F_SETFL, fcntl(master, F_GETFL) | O_NONBLOCK);
	/* `slave` stays open so the master never sees EIO between clients. */

	uint32_t flags = 0;
	avr_ioctl(avr, AVR_IOCTL_UART_GET_FLAGS('0'), &flags);
	flags &= ~AVR_UART_FLAG_STDIO;
	avr_ioctl(avr, AVR_IOCTL_UART_SET_FLAGS('0'), &flags);
	avr_irq_t *uart_in = avr_io_getirq(avr, AVR_IOCTL_UART_GETIRQ('0'), UART_IRQ_INPUT);
	avr_irq_register_notify(avr_io_getirq(avr, AVR_IOCTL_UART_GETIRQ('0'), UART_IRQ_OUTPUT), on_uart_out, NULL);
	avr_irq_register_notify(avr_io_getirq(avr, AVR_IOCTL_UART_GETIRQ('0'), UART_IRQ_OUT_XON), on_xon, NULL);
	avr_irq_register_notify(avr_io_getirq(avr, AVR_IOCTL_UART_GETIRQ('0'), UART_IRQ_OUT_XOFF), on_xoff, NULL);

	if (link_path) {
		unlink(link_path);
		if (symlink(slavename, link_path) != 0) {
			perror("simrun: symlink");
			return 1;
		}
	}
	printf("PTY %s\n", slavename);
	fflush(stdout);

	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	uint8_t inbuf[512];
	size_t inpos = 0, inlen = 0;
	int state = cpu_Running;
	unsigned long reported = 0;
	avr_cycle_count_t next_report = avr->frequency;
	while (!stop_requested) {
		if (avr->cycle >= next_report) {
			next_report += avr->frequency;
			unsigned long moved = rx_lines + rx_frames + tx_lines + tx_frames;
			if (moved != reported) {
				reported = moved;
				printf("UART rx %lu %lu tx %lu %lu\n", rx_lines, rx_frames, tx_lines, tx_frames);
				fflush(stdout);
			}
		}
		for (int k = 0; k < 256; k++) {
			state = avr_run(avr);
			if (state == cpu_Done || state == cpu_Crashed)
				goto out;
		}
		if (outlen) {
			ssize_t w = write(master, outbuf, outlen);
			if (w > 0) {
				memmove(outbuf, outbuf + w, outlen - (size_t)w);
				outlen -= (size_t)w;
			}
		}
		if (inpos == inlen) {
			ssize_t r = read(master, inbuf, sizeof(inbuf));
			if (r > 0) {
				inpos = 0;
				inlen = (size_t)r;
			}
		}
		while (xon && inpos < inlen) {
			count(inbuf[inpos], &rx_lines, &rx_frames);
			avr_raise_irq(uart_in, inbuf[inpos++]);
		}
	}
out:
	if (link_path)
		unlink(link_path);
	if (state == cpu_Crashed) {
		fprintf(stderr, "simrun: firmware crashed\n");
		return 1;
	}
	return 0;
}
