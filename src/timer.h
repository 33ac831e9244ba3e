/*
 * timer.h - deadlines and periodic housekeeping.
 */
#ifndef SLUICE_TIMER_H
#define SLUICE_TIMER_H

struct sluice;

/* Starts the housekeeping tick on ctx->housekeeping. */
void timer_start(struct sluice *ctx);

/* Stops it (shutdown); the handle is closed. */
void timer_stop(struct sluice *ctx);

#endif
