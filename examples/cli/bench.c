/* mae bench: being written this session. */
#include "cli.h"

int cmd_bench(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    return cli_usage_error("bench", "not built yet");
}
