/*
 * harness.h -- a minimal unit test harness: checks count passes and
 * failures, each failure is printed with file:line, and unit_main prints
 * one summary line.
 */
#ifndef MWS_TESTS_UNIT_HARNESS_H
#define MWS_TESTS_UNIT_HARNESS_H

#include <stdio.h>
#include <string.h>

extern unsigned long unit_passed;
extern unsigned long unit_failed;

void unit_fail(const char *file, int line, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

#define CHECK(cond) do {                                                   \
        if (cond) {                                                        \
            unit_passed++;                                                 \
        }                                                                  \
        else {                                                             \
            unit_fail(__FILE__, __LINE__, "CHECK(%s)", #cond);             \
        }                                                                  \
    } while (0)

#define CHECK_EQ(a, b) do {                                                \
        unsigned long long a_ = (unsigned long long)(a);                   \
        unsigned long long b_ = (unsigned long long)(b);                   \
        if (a_ == b_) {                                                    \
            unit_passed++;                                                 \
        }                                                                  \
        else {                                                             \
            unit_fail(__FILE__, __LINE__, "%s == %s: %llu != %llu",        \
                      #a, #b, a_, b_);                                     \
        }                                                                  \
    } while (0)

#define CHECK_MEM(a, alen, b, blen) do {                                   \
        size_t al_ = (size_t)(alen), bl_ = (size_t)(blen);                 \
        if (al_ == bl_ && (al_ == 0 || memcmp((a), (b), al_) == 0)) {      \
            unit_passed++;                                                 \
        }                                                                  \
        else {                                                             \
            unit_fail(__FILE__, __LINE__, "%s (%zu bytes) != %s (%zu bytes)", \
                      #a, al_, #b, bl_);                                   \
        }                                                                  \
    } while (0)

#define CHECK_STR(a, b) do {                                               \
        const char *as_ = (a), *bs_ = (b);                                 \
        if (as_ != NULL && bs_ != NULL && strcmp(as_, bs_) == 0) {         \
            unit_passed++;                                                 \
        }                                                                  \
        else {                                                             \
            unit_fail(__FILE__, __LINE__, "%s == %s: \"%s\" != \"%s\"",    \
                      #a, #b, as_ ? as_ : "(null)", bs_ ? bs_ : "(null)"); \
        }                                                                  \
    } while (0)

void test_utf8(void);
void test_close(void);
void test_frame(void);
void test_handshake(void);
void test_origin(void);
void test_addrtab(void);
void test_deflate(void);

#endif /* MWS_TESTS_UNIT_HARNESS_H */
