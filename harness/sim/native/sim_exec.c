/* /proc/self/exe on the simulated board: the simulated kernel's program loader (see harness/sim/foreign_exec.py).
 *
 * busybox ash calls /proc/self/exe (its CONFIG_BUSYBOX_EXEC_PATH) in two ways, told apart by argv[0]:
 *   - argv[0] is an applet's name ("od", "awk"): ash runs its own applets through it (FEATURE_SH_STANDALONE),
 *     trying PATH only when that fails;
 *   - argv[0] is "ash" and argv[1] a file the kernel refused with ENOEXEC: POSIX says run it as a script.
 * A real board's kernel runs its own machine's ELF files itself; here the host kernel cannot, so in the second
 * case an ELF file of the board's machine (BOARD_MACHINE, e.g. 40 = ARM) runs under qemu-user, which the
 * simulator copied into the board with the host libraries it needs. Everything else goes on to busybox as before.
 * Built static with the host's C compiler; BOARD_MACHINE and QEMU come from the build command.
 */
#define _DEFAULT_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef BOARD_MACHINE
#error "build with -DBOARD_MACHINE=<ELF e_machine> -DQEMU=\"qemu-arm\""
#endif
#define QEMU_DIR "/usr/libexec/sim-qemu"

/* The file's ELF e_machine, 0 when it is not an ELF file (a script without "#!"). */
static int elf_machine(const char *path) {
    unsigned char head[20];
    int fd = open(path, O_RDONLY);
    if (fd < 0) return 0;
    ssize_t n = read(fd, head, sizeof head);
    close(fd);
    if (n < (ssize_t)sizeof head || memcmp(head, "\177ELF", 4) != 0) return 0;
    return head[5] == 2 ? (head[18] << 8 | head[19]) : (head[18] | head[19] << 8);
}

int main(int argc, char **argv) {
    if (argc >= 2 && strcmp(argv[0], "ash") == 0) {
        int machine = elf_machine(argv[1]);
        if (machine == BOARD_MACHINE) {
            char **args = calloc((size_t)argc + 4, sizeof *args);
            if (!args) return 126;
            args[0] = QEMU_DIR "/ld.so";
            args[1] = "--library-path";
            args[2] = QEMU_DIR;
            args[3] = QEMU_DIR "/" QEMU;
            for (int i = 1; i < argc; i++) args[3 + i] = argv[i];
            execv(args[0], args);
            fprintf(stderr, "%s: cannot execute: the simulator found no " QEMU " (apt-get install qemu-user)\n",
                    argv[1]);
            return 126;
        }
        if (machine) {
            fprintf(stderr, "%s: cannot execute binary file: Exec format error\n", argv[1]);
            return 126;
        }
    }
    /* An applet: by PATH, as ash does when /proc/self/exe is missing, so the board's own dmesg or reboot (scripts
     * that replace busybox's) win over the applet of that name; an applet with no link goes to busybox. */
    if (argv[0] && !strchr(argv[0], '/')) execvp(argv[0], argv);
    execv("/bin/busybox", argv);
    perror("/bin/busybox");
    return 127;
}
