/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * otf_insn.h - the C mirror of crates/otf-script/src/bytecode.rs.
 *
 * Every number here must equal the one in bytecode.rs; the test
 * crates/otf-bpf/tests/header.rs parses this file and checks it against
 * the Rust definitions. Change both or neither.
 */
#ifndef OTF_INSN_H
#define OTF_INSN_H

/* Limits (bytecode.rs). */
#define OTF_MAX_STACK 32
#define OTF_MAX_LOCALS 64
#define OTF_MAX_GLOBALS 1024
#define OTF_MAX_OUT_ARGS 16
#define OTF_MAX_ENTRY_SLOTS 8
#define OTF_MAX_STEPS 20000
#define OTF_MAX_CODE 65536
#define OTF_LOCK_STRIPES 64

/* One instruction: 16 bytes, identical to `otf_script::bytecode::Insn`. */
struct otf_insn {
	unsigned char op;     /* enum otf_op */
	unsigned char pad[3]; /* reserved, zero */
	int arg;              /* small operand */
	long long imm;        /* wide operand */
};

/* Opcodes (`otf_script::bytecode::Op`). */
enum otf_op {
	OTF_OP_NOP = 0,
	OTF_OP_PUSH = 1,
	OTF_OP_LDG = 2,
	OTF_OP_STG = 3,
	OTF_OP_LDL = 4,
	OTF_OP_STL = 5,
	OTF_OP_DUP = 6,
	OTF_OP_POP = 7,
	OTF_OP_ADD = 8,
	OTF_OP_SUB = 9,
	OTF_OP_MUL = 10,
	OTF_OP_DIV = 11,
	OTF_OP_MOD = 12,
	OTF_OP_SHL = 13,
	OTF_OP_SHR = 14,
	OTF_OP_AND = 15,
	OTF_OP_OR = 16,
	OTF_OP_XOR = 17,
	OTF_OP_LT = 18,
	OTF_OP_LE = 19,
	OTF_OP_GT = 20,
	OTF_OP_GE = 21,
	OTF_OP_EQ = 22,
	OTF_OP_NE = 23,
	OTF_OP_NEG = 24,
	OTF_OP_LNOT = 25,
	OTF_OP_BNOT = 26,
	OTF_OP_JMP = 27,
	OTF_OP_JZ = 28,
	OTF_OP_JNZ = 29,
	OTF_OP_NEXT = 30,
	OTF_OP_RET = 31,
	OTF_OP_CTX = 32,
	OTF_OP_RANDINT = 33,
	OTF_OP_OUT = 34,
	OTF_OP_EXIT = 35,
	OTF_OP_ENTRYSAVE = 36,
	OTF_OP_ENTRYLOAD = 37,
	OTF_OP_SKIP = 38,
};

/* Context ids (`otf_script::bytecode::Ctx`). */
enum otf_ctx {
	OTF_CTX_PID = 0,
	OTF_CTX_TID = 1,
	OTF_CTX_PPID = 2,
	OTF_CTX_UID = 3,
	OTF_CTX_CPU = 4,
	OTF_CTX_TIMENS = 5,
	OTF_CTX_TARGET = 6,
	OTF_CTX_RETVAL = 7,
	OTF_CTX_INTARG = 8,
	OTF_CTX_LONGARG = 9,
};

#endif /* OTF_INSN_H */
