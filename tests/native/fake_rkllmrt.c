/*
 * fake_rkllmrt.c - a stand-in for Rockchip's librkllmrt.so for x86-64 CI machines without an NPU.
 *
 * It implements the C ABI of RKLLM runtime 1.2.1-1.2.3 (-DRKLLM_ABI=12) or 1.3.0 (-DRKLLM_ABI=13)
 * with the struct layouts of Rockchip's rkllm.h of each release (AArch64 LP64), asserted below field by
 * field, so a ctypes binding talks to it exactly as it would to the real runtime. Behaviour (model
 * file keys, prompt directives, abort/pause semantics, JSON call log) is described in README.md.
 *
 * Build: cc -std=c11 -O1 -g -Wall -Wextra -Werror -shared -fPIC -DRKLLM_ABI=13 \
 *            -o librkllmrt.so fake_rkllmrt.c -lpthread
 */
#define _POSIX_C_SOURCE 200809L

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#if !defined(RKLLM_ABI)
#error "compile with -DRKLLM_ABI=12 (runtime 1.2.1-1.2.3) or -DRKLLM_ABI=13 (runtime 1.3.0)"
#elif RKLLM_ABI != 12 && RKLLM_ABI != 13
#error "RKLLM_ABI must be 12 or 13"
#endif

#if RKLLM_ABI == 13
#define ABI_NAME "1.3"
#define RUNTIME_VERSION "1.3.0"
#else
#define ABI_NAME "1.2"
#define RUNTIME_VERSION "1.2.3"
#endif

#define API __attribute__((visibility("default")))
#define SIZE(T, n) _Static_assert(sizeof(T) == (n), "sizeof(" #T ") != " #n)
#define OFF(T, f, n) _Static_assert(offsetof(T, f) == (n), "offsetof(" #T ", " #f ") != " #n)

_Static_assert(sizeof(void *) == 8 && sizeof(size_t) == 8, "LP64 only (x86-64 / AArch64)");
_Static_assert(sizeof(bool) == 1 && sizeof(int) == 4 && sizeof(float) == 4, "bool 1, int 4, float 4");

/* ------------------------------------------------------------------------------------------------
 * ABI: enums, typedefs, structs (rkllm.h of 1.3.0, and where 1.2.1-1.2.3 differ)
 * --------------------------------------------------------------------------------------------- */

typedef void *LLMHandle;

typedef enum {
    RKLLM_RUN_NORMAL = 0,
    RKLLM_RUN_WAITING = 1,
    RKLLM_RUN_FINISH = 2,
    RKLLM_RUN_ERROR = 3,
} LLMCallState;

typedef enum {
    RKLLM_INPUT_PROMPT = 0,
    RKLLM_INPUT_TOKEN = 1,
    RKLLM_INPUT_EMBED = 2,
    RKLLM_INPUT_MULTIMODAL = 3,
} RKLLMInputType;

typedef enum {
    RKLLM_INFER_GENERATE = 0,
    RKLLM_INFER_GET_LAST_HIDDEN_LAYER = 1,
    RKLLM_INFER_GET_LOGITS = 2,
} RKLLMInferMode;

SIZE(LLMCallState, 4);
SIZE(RKLLMInputType, 4);
SIZE(RKLLMInferMode, 4);

typedef struct {
    int32_t base_domain_id;
    int8_t embed_flash;
    int8_t enabled_cpus_num;
    uint32_t enabled_cpus_mask;
    uint8_t n_batch;
    int8_t use_cross_attn;
    uint8_t reserved[104];
} RKLLMExtendParam;
SIZE(RKLLMExtendParam, 120);
OFF(RKLLMExtendParam, base_domain_id, 0);
OFF(RKLLMExtendParam, embed_flash, 4);
OFF(RKLLMExtendParam, enabled_cpus_num, 5);
OFF(RKLLMExtendParam, enabled_cpus_mask, 8);
OFF(RKLLMExtendParam, n_batch, 12);
OFF(RKLLMExtendParam, use_cross_attn, 13);
OFF(RKLLMExtendParam, reserved, 14);

typedef struct {
    const char *model_path;
    int32_t max_context_len;
    int32_t max_new_tokens;
    int32_t top_k;
    int32_t n_keep;
    float top_p;
    float temperature;
    float repeat_penalty;
    float frequency_penalty;
    float presence_penalty;
    int32_t mirostat;
    float mirostat_tau;
    float mirostat_eta;
    bool skip_special_token;
#if RKLLM_ABI == 13
    bool ignore_eos_token;
    bool is_async;
#else
    bool is_async;
    const char *img_start;
    const char *img_end;
    const char *img_content;
#endif
    RKLLMExtendParam extend_param;
} RKLLMParam;
OFF(RKLLMParam, model_path, 0);
OFF(RKLLMParam, max_context_len, 8);
OFF(RKLLMParam, max_new_tokens, 12);
OFF(RKLLMParam, top_k, 16);
OFF(RKLLMParam, n_keep, 20);
OFF(RKLLMParam, top_p, 24);
OFF(RKLLMParam, temperature, 28);
OFF(RKLLMParam, repeat_penalty, 32);
OFF(RKLLMParam, frequency_penalty, 36);
OFF(RKLLMParam, presence_penalty, 40);
OFF(RKLLMParam, mirostat, 44);
OFF(RKLLMParam, mirostat_tau, 48);
OFF(RKLLMParam, mirostat_eta, 52);
OFF(RKLLMParam, skip_special_token, 56);
#if RKLLM_ABI == 13
SIZE(RKLLMParam, 184);
OFF(RKLLMParam, ignore_eos_token, 57);
OFF(RKLLMParam, is_async, 58);
OFF(RKLLMParam, extend_param, 60);
OFF(RKLLMParam, extend_param.base_domain_id, 60);
OFF(RKLLMParam, extend_param.embed_flash, 64);
OFF(RKLLMParam, extend_param.enabled_cpus_num, 65);
OFF(RKLLMParam, extend_param.enabled_cpus_mask, 68);
OFF(RKLLMParam, extend_param.n_batch, 72);
OFF(RKLLMParam, extend_param.use_cross_attn, 73);
OFF(RKLLMParam, extend_param.reserved, 74);
#else
SIZE(RKLLMParam, 208);
OFF(RKLLMParam, is_async, 57);
OFF(RKLLMParam, img_start, 64);
OFF(RKLLMParam, img_end, 72);
OFF(RKLLMParam, img_content, 80);
OFF(RKLLMParam, extend_param, 88);
#endif

typedef struct {
    const char *lora_adapter_path;
    const char *lora_adapter_name;
    float scale;
} RKLLMLoraAdapter;
SIZE(RKLLMLoraAdapter, 24);
OFF(RKLLMLoraAdapter, lora_adapter_path, 0);
OFF(RKLLMLoraAdapter, lora_adapter_name, 8);
OFF(RKLLMLoraAdapter, scale, 16);

typedef struct {
    float *embed;
    size_t n_tokens;
} RKLLMEmbedInput;
SIZE(RKLLMEmbedInput, 16);
OFF(RKLLMEmbedInput, embed, 0);
OFF(RKLLMEmbedInput, n_tokens, 8);

typedef struct {
    int32_t *input_ids;
    size_t n_tokens;
} RKLLMTokenInput;
SIZE(RKLLMTokenInput, 16);
OFF(RKLLMTokenInput, input_ids, 0);
OFF(RKLLMTokenInput, n_tokens, 8);

#if RKLLM_ABI == 13
typedef struct {
    char *prompt;
    struct {
        float *image_embed;
        size_t n_image_tokens;
        size_t n_image;
        const char *image_start;
        const char *image_end;
        const char *image_content;
        size_t image_width;
        size_t image_height;
    } image;
    struct {
        float *video_embed;
        size_t n_frame_tokens;
        size_t n_frame_per_video;
        size_t n_video;
        const char *video_start;
        const char *video_end;
        const char *video_content;
        size_t frame_width;
        size_t frame_height;
    } video;
} RKLLMMultiModalInput;
SIZE(RKLLMMultiModalInput, 144);
OFF(RKLLMMultiModalInput, prompt, 0);
OFF(RKLLMMultiModalInput, image, 8);
OFF(RKLLMMultiModalInput, image.image_embed, 8);
OFF(RKLLMMultiModalInput, image.n_image_tokens, 16);
OFF(RKLLMMultiModalInput, image.n_image, 24);
OFF(RKLLMMultiModalInput, image.image_start, 32);
OFF(RKLLMMultiModalInput, image.image_end, 40);
OFF(RKLLMMultiModalInput, image.image_content, 48);
OFF(RKLLMMultiModalInput, image.image_width, 56);
OFF(RKLLMMultiModalInput, image.image_height, 64);
OFF(RKLLMMultiModalInput, video, 72);
OFF(RKLLMMultiModalInput, video.video_embed, 72);
OFF(RKLLMMultiModalInput, video.n_frame_tokens, 80);
OFF(RKLLMMultiModalInput, video.n_frame_per_video, 88);
OFF(RKLLMMultiModalInput, video.n_video, 96);
OFF(RKLLMMultiModalInput, video.video_start, 104);
OFF(RKLLMMultiModalInput, video.video_end, 112);
OFF(RKLLMMultiModalInput, video.video_content, 120);
OFF(RKLLMMultiModalInput, video.frame_width, 128);
OFF(RKLLMMultiModalInput, video.frame_height, 136);
#else
typedef struct {
    char *prompt;
    float *image_embed;
    size_t n_image_tokens;
    size_t n_image;
    size_t image_width;
    size_t image_height;
} RKLLMMultiModalInput;
typedef RKLLMMultiModalInput RKLLMMultiModelInput; /* the 1.2.1/1.2.2 spelling */
SIZE(RKLLMMultiModalInput, 48);
OFF(RKLLMMultiModalInput, prompt, 0);
OFF(RKLLMMultiModalInput, image_embed, 8);
OFF(RKLLMMultiModalInput, n_image_tokens, 16);
OFF(RKLLMMultiModalInput, n_image, 24);
OFF(RKLLMMultiModalInput, image_width, 32);
OFF(RKLLMMultiModalInput, image_height, 40);
#endif

typedef struct {
    const char *role;
    bool enable_thinking;
    RKLLMInputType input_type;
    union {
        const char *prompt_input;
        RKLLMEmbedInput embed_input;
        RKLLMTokenInput token_input;
        RKLLMMultiModalInput multimodal_input;
    };
} RKLLMInput;
OFF(RKLLMInput, role, 0);
OFF(RKLLMInput, enable_thinking, 8);
OFF(RKLLMInput, input_type, 12);
OFF(RKLLMInput, prompt_input, 16);
OFF(RKLLMInput, embed_input, 16);
OFF(RKLLMInput, token_input, 16);
OFF(RKLLMInput, multimodal_input, 16);
#if RKLLM_ABI == 13
SIZE(RKLLMInput, 160);
OFF(RKLLMInput, embed_input.embed, 16);
OFF(RKLLMInput, embed_input.n_tokens, 24);
OFF(RKLLMInput, multimodal_input.prompt, 16);
OFF(RKLLMInput, multimodal_input.image.image_embed, 24);
OFF(RKLLMInput, multimodal_input.image.n_image_tokens, 32);
OFF(RKLLMInput, multimodal_input.image.n_image, 40);
OFF(RKLLMInput, multimodal_input.image.image_start, 48);
OFF(RKLLMInput, multimodal_input.image.image_end, 56);
OFF(RKLLMInput, multimodal_input.image.image_content, 64);
OFF(RKLLMInput, multimodal_input.image.image_width, 72);
OFF(RKLLMInput, multimodal_input.image.image_height, 80);
OFF(RKLLMInput, multimodal_input.video, 88);
#else
SIZE(RKLLMInput, 64);
#endif

typedef struct {
    const char *lora_adapter_name;
} RKLLMLoraParam;
SIZE(RKLLMLoraParam, 8);
OFF(RKLLMLoraParam, lora_adapter_name, 0);

typedef struct {
    int save_prompt_cache;
    const char *prompt_cache_path;
} RKLLMPromptCacheParam;
SIZE(RKLLMPromptCacheParam, 16);
OFF(RKLLMPromptCacheParam, save_prompt_cache, 0);
OFF(RKLLMPromptCacheParam, prompt_cache_path, 8);

typedef struct {
    float *encoder_k_cache;
    float *encoder_v_cache;
    float *encoder_mask;
    int32_t *encoder_pos;
    int num_tokens;
} RKLLMCrossAttnParam;
SIZE(RKLLMCrossAttnParam, 40);
OFF(RKLLMCrossAttnParam, encoder_k_cache, 0);
OFF(RKLLMCrossAttnParam, encoder_v_cache, 8);
OFF(RKLLMCrossAttnParam, encoder_mask, 16);
OFF(RKLLMCrossAttnParam, encoder_pos, 24);
OFF(RKLLMCrossAttnParam, num_tokens, 32);

#if RKLLM_ABI == 13
typedef struct {
    int32_t top_k;
    float top_p;
    float temperature;
    float repeat_penalty;
    float frequency_penalty;
    float presence_penalty;
    int32_t mirostat;
    float mirostat_tau;
    float mirostat_eta;
} RKLLMSamplingParam;
SIZE(RKLLMSamplingParam, 36);
OFF(RKLLMSamplingParam, top_k, 0);
OFF(RKLLMSamplingParam, top_p, 4);
OFF(RKLLMSamplingParam, temperature, 8);
OFF(RKLLMSamplingParam, repeat_penalty, 12);
OFF(RKLLMSamplingParam, frequency_penalty, 16);
OFF(RKLLMSamplingParam, presence_penalty, 20);
OFF(RKLLMSamplingParam, mirostat, 24);
OFF(RKLLMSamplingParam, mirostat_tau, 28);
OFF(RKLLMSamplingParam, mirostat_eta, 32);
#endif

typedef struct {
    RKLLMInferMode mode;
    RKLLMLoraParam *lora_params;
    RKLLMPromptCacheParam *prompt_cache_params;
#if RKLLM_ABI == 13
    RKLLMSamplingParam *sampling_params;
#endif
    int keep_history;
#if RKLLM_ABI == 13
    int32_t max_new_tokens;
#endif
} RKLLMInferParam;
OFF(RKLLMInferParam, mode, 0);
OFF(RKLLMInferParam, lora_params, 8);
OFF(RKLLMInferParam, prompt_cache_params, 16);
#if RKLLM_ABI == 13
SIZE(RKLLMInferParam, 40);
OFF(RKLLMInferParam, sampling_params, 24);
OFF(RKLLMInferParam, keep_history, 32);
OFF(RKLLMInferParam, max_new_tokens, 36);
#else
SIZE(RKLLMInferParam, 32);
OFF(RKLLMInferParam, keep_history, 24);
#endif

typedef struct {
    const float *hidden_states;
    int embd_size;
    int num_tokens;
} RKLLMResultLastHiddenLayer;
SIZE(RKLLMResultLastHiddenLayer, 16);
OFF(RKLLMResultLastHiddenLayer, hidden_states, 0);
OFF(RKLLMResultLastHiddenLayer, embd_size, 8);
OFF(RKLLMResultLastHiddenLayer, num_tokens, 12);

typedef struct {
    const float *logits;
    int vocab_size;
    int num_tokens;
} RKLLMResultLogits;
SIZE(RKLLMResultLogits, 16);
OFF(RKLLMResultLogits, logits, 0);
OFF(RKLLMResultLogits, vocab_size, 8);
OFF(RKLLMResultLogits, num_tokens, 12);

typedef struct {
    float prefill_time_ms;
    int prefill_tokens;
    float generate_time_ms;
    int generate_tokens;
    float memory_usage_mb;
} RKLLMPerfStat;
SIZE(RKLLMPerfStat, 20);
OFF(RKLLMPerfStat, prefill_time_ms, 0);
OFF(RKLLMPerfStat, prefill_tokens, 4);
OFF(RKLLMPerfStat, generate_time_ms, 8);
OFF(RKLLMPerfStat, generate_tokens, 12);
OFF(RKLLMPerfStat, memory_usage_mb, 16);

typedef struct {
    const char *text;
    int32_t token_id;
    RKLLMResultLastHiddenLayer last_hidden_layer;
    RKLLMResultLogits logits;
    RKLLMPerfStat perf;
} RKLLMResult;
SIZE(RKLLMResult, 72);
OFF(RKLLMResult, text, 0);
OFF(RKLLMResult, token_id, 8);
OFF(RKLLMResult, last_hidden_layer, 16);
OFF(RKLLMResult, logits, 32);
OFF(RKLLMResult, perf, 48);

/* int in both 1.2.1+ and 1.3.0: 0 continue, 1 pause (1.3.0 also: 2 release the output buffer). */
typedef int (*LLMResultCallback)(RKLLMResult *result, void *userdata, LLMCallState state);

#if RKLLM_ABI == 13
typedef int (*LLMTokenizerCallback)(void *userdata, const char *text, int32_t text_len, int32_t *tokens,
                                    int32_t n_tokens_max);
typedef int (*LLMGetEmbedCallback)(void *userdata, int32_t *tokens, uint64_t num_tokens, void *embed, uint64_t len);

typedef struct {
    LLMResultCallback result_callback;
    void *result_userdata;
    LLMTokenizerCallback tokenizer_callback;
    void *tokenizer_userdata;
    LLMGetEmbedCallback embed_callback;
    void *embed_userdata;
} RKLLMCallback;
SIZE(RKLLMCallback, 48);
OFF(RKLLMCallback, result_callback, 0);
OFF(RKLLMCallback, result_userdata, 8);
OFF(RKLLMCallback, tokenizer_callback, 16);
OFF(RKLLMCallback, tokenizer_userdata, 24);
OFF(RKLLMCallback, embed_callback, 32);
OFF(RKLLMCallback, embed_userdata, 40);
#endif

/* Exported functions (rkllm.h): the symbol set of 1.2.1 ... 1.3.0. */
API RKLLMParam rkllm_createDefaultParam(void);
#if RKLLM_ABI == 13
API int rkllm_init(LLMHandle *handle, RKLLMParam *param, RKLLMCallback *callback);
#else
API int rkllm_init(LLMHandle *handle, RKLLMParam *param, LLMResultCallback callback);
#endif
API int rkllm_load_lora(LLMHandle handle, RKLLMLoraAdapter *lora_adapter);
API int rkllm_load_prompt_cache(LLMHandle handle, const char *prompt_cache_path);
API int rkllm_release_prompt_cache(LLMHandle handle);
API int rkllm_destroy(LLMHandle handle);
API int rkllm_run(LLMHandle handle, RKLLMInput *rkllm_input, RKLLMInferParam *rkllm_infer_params, void *userdata);
API int rkllm_run_async(LLMHandle handle, RKLLMInput *rkllm_input, RKLLMInferParam *rkllm_infer_params,
                        void *userdata);
API int rkllm_abort(LLMHandle handle);
API int rkllm_is_running(LLMHandle handle);
API int rkllm_clear_kv_cache(LLMHandle handle, int keep_system_prompt, int *start_pos, int *end_pos);
API int rkllm_get_kv_cache_size(LLMHandle handle, int *cache_sizes);
API int rkllm_set_chat_template(LLMHandle handle, const char *system_prompt, const char *prompt_prefix,
                                const char *prompt_postfix);
API int rkllm_set_function_tools(LLMHandle handle, const char *system_prompt, const char *tools,
                                 const char *tool_response_str);
API int rkllm_set_cross_attn_params(LLMHandle handle, RKLLMCrossAttnParam *cross_attn_params);

/* ------------------------------------------------------------------------------------------------
 * Small helpers: growable string, JSON, CRC-32, clocks, logging
 * --------------------------------------------------------------------------------------------- */

typedef struct {
    char *data;
    size_t len;
    size_t cap;
} Buf;

static void buf_add(Buf *b, const char *s, size_t n) {
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) cap *= 2;
        char *data = realloc(b->data, cap);
        if (data == NULL) abort(); /* a test runtime may die on OOM */
        b->data = data;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

static void buf_str(Buf *b, const char *s) { buf_add(b, s, strlen(s)); }

__attribute__((format(printf, 2, 3))) static void buf_fmt(Buf *b, const char *fmt, ...) {
    char small[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n < sizeof small) {
        buf_add(b, small, (size_t)n);
        return;
    }
    char *big = malloc((size_t)n + 1);
    if (big == NULL) abort();
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    buf_add(b, big, (size_t)n);
    free(big);
}

/* Length of the valid UTF-8 sequence at s (max n bytes), 0 when invalid. */
static size_t utf8_seq(const unsigned char *s, size_t n) {
    unsigned char c = s[0];
    size_t len;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) len = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else return 0;
    if (n < len) return 0;
    if (s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xBF) return 0;
    return len;
}

/* A JSON string (or null); invalid UTF-8 bytes become U+FFFD so the line stays valid JSON. */
static void json_str(Buf *b, const char *s) {
    if (s == NULL) {
        buf_str(b, "null");
        return;
    }
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s);
    buf_str(b, "\"");
    for (size_t i = 0; i < n;) {
        unsigned char c = p[i];
        if (c == '"' || c == '\\') {
            char esc[2] = {'\\', (char)c};
            buf_add(b, esc, 2);
            i++;
        } else if (c == '\n') {
            buf_str(b, "\\n"), i++;
        } else if (c == '\r') {
            buf_str(b, "\\r"), i++;
        } else if (c == '\t') {
            buf_str(b, "\\t"), i++;
        } else if (c < 0x20 || c == 0x7F) {
            buf_fmt(b, "\\u%04x", c), i++;
        } else {
            size_t len = utf8_seq(p + i, n - i);
            if (len == 0) {
                buf_str(b, "\\ufffd");
                i++;
            } else {
                buf_add(b, s + i, len);
                i += len;
            }
        }
    }
    buf_str(b, "\"");
}

static void json_key(Buf *b, const char *key) {
    buf_str(b, b->len > 1 ? "," : "");
    json_str(b, key);
    buf_str(b, ":");
}
static void jstr(Buf *b, const char *key, const char *v) { json_key(b, key), json_str(b, v); }
static void jint(Buf *b, const char *key, long long v) { json_key(b, key), buf_fmt(b, "%lld", v); }
static void jbool(Buf *b, const char *key, bool v) { json_key(b, key), buf_str(b, v ? "true" : "false"); }
static void jnull(Buf *b, const char *key) { json_key(b, key), buf_str(b, "null"); }
static void jfloat(Buf *b, const char *key, float v) {
    json_key(b, key);
    if (isfinite(v)) buf_fmt(b, "%.6g", (double)v);
    else buf_str(b, "null");
}

/* Appends one JSON object (b holds "{...", without the closing brace) to $EDGE_VLM_FAKE_RKLLM_LOG. */
static void log_write(Buf *b) {
    const char *path = getenv("EDGE_VLM_FAKE_RKLLM_LOG");
    if (path != NULL && *path != '\0') {
        buf_str(b, "}\n");
        int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (fd >= 0) {
            size_t off = 0;
            while (off < b->len) {
                ssize_t w = write(fd, b->data + off, b->len - off);
                if (w < 0 && errno == EINTR) continue;
                if (w <= 0) break;
                off += (size_t)w;
            }
            close(fd);
        } else {
            fprintf(stderr, "W rkllm: test runtime cannot append to %s: %s\n", path, strerror(errno));
        }
    }
    free(b->data);
}

static void log_begin(Buf *b, const char *event, int handle_id) {
    memset(b, 0, sizeof *b);
    buf_str(b, "{");
    jstr(b, "event", event);
    jstr(b, "abi", ABI_NAME);
    jint(b, "pid", (long long)getpid());
    if (handle_id > 0) jint(b, "handle", handle_id);
    else jnull(b, "handle");
}

static uint32_t crc_table[256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[i] = c;
    }
}

/* CRC-32 (IEEE, as zlib.crc32), so a test computes the expected signature in one call. */
static uint32_t crc32_bytes(const void *data, size_t n) {
    pthread_once(&crc_once, crc_init);
    const unsigned char *p = data;
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) c = crc_table[(c ^ p[i]) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

#if RKLLM_ABI == 12
static char *dup_or_null(const char *s) {
    if (s == NULL) return NULL;
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d == NULL) abort();
    memcpy(d, s, n);
    return d;
}
#endif

/* ------------------------------------------------------------------------------------------------
 * Handles
 * --------------------------------------------------------------------------------------------- */

#define TOKEN_BUF 64

typedef struct {
    long embed_dim, image_tokens, npu_cores, token_delay_ms, max_context_limit;
} Model;

typedef struct Fake {
    int id;
    struct Fake *next;
    pthread_mutex_t lock; /* guards running, kv_size */
    atomic_int abort_requested;
    int running;
    int kv_size;
    char kv_image[9]; /* the signature of the image the KV cache holds ("" for none) */
    Model model;
    int32_t max_context_len;
    int32_t max_new_tokens;
    LLMResultCallback callback;
    void *callback_userdata;
#if RKLLM_ABI == 12
    char *img_start, *img_end, *img_content; /* copied from RKLLMParam at init */
#endif
    char text[TOKEN_BUF]; /* RKLLMResult.text: one buffer, overwritten after every callback */
    RKLLMResult result;
} Fake;

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static Fake *registry;
static int next_handle_id = 1;

/* The live handle behind `handle`, returned with its mutex held; NULL (and a message) if there is none. */
static Fake *acquire(LLMHandle handle, const char *fn) {
    pthread_mutex_lock(&registry_lock);
    Fake *h = registry;
    while (h != NULL && (void *)h != handle) h = h->next;
    if (h != NULL) pthread_mutex_lock(&h->lock);
    pthread_mutex_unlock(&registry_lock);
    if (h == NULL) fprintf(stderr, "E rkllm: %s: invalid handle %p\n", fn, handle);
    return h;
}

static void release(Fake *h) { pthread_mutex_unlock(&h->lock); }

/* ------------------------------------------------------------------------------------------------
 * Model file: `key=value` lines standing in for a .rkllm
 * --------------------------------------------------------------------------------------------- */

static char *trim(char *s) {
    while (isspace((unsigned char)*s)) s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1])) *--e = '\0';
    return s;
}

/* 0 ok; -1 unreadable; -2 malformed. `err` gets the reason. */
static int load_model(const char *path, Model *m, char *err, size_t errlen) {
    static const struct {
        const char *key;
        size_t offset;
        long min, max;
    } keys[] = {
        {"embed_dim", offsetof(Model, embed_dim), 1, 65536},
        {"image_tokens", offsetof(Model, image_tokens), 1, 65536},
        {"npu_cores", offsetof(Model, npu_cores), 1, 3},
        {"token_delay_ms", offsetof(Model, token_delay_ms), 0, 60000},
        {"max_context_limit", offsetof(Model, max_context_limit), 1, 1048576},
    };
    *m = (Model){.embed_dim = 0, .image_tokens = 0, .npu_cores = 3, .token_delay_ms = 0, .max_context_limit = 4096};
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        snprintf(err, errlen, "%s", strerror(errno));
        return -1;
    }
    char line[512];
    int lineno = 0, rc = 0;
    while (rc == 0 && fgets(line, sizeof line, f) != NULL) {
        lineno++;
        if (strchr(line, '\n') == NULL && !feof(f)) {
            snprintf(err, errlen, "line %d: too long", lineno);
            rc = -2;
            break;
        }
        char *s = trim(line);
        if (*s == '\0' || *s == '#') continue;
        char *eq = strchr(s, '=');
        if (eq == NULL) {
            snprintf(err, errlen, "line %d: not key=value", lineno);
            rc = -2;
            break;
        }
        *eq = '\0';
        char *key = trim(s), *value = trim(eq + 1), *end = NULL;
        size_t k = 0;
        while (k < sizeof keys / sizeof keys[0] && strcmp(keys[k].key, key) != 0) k++;
        if (k == sizeof keys / sizeof keys[0]) {
            snprintf(err, errlen, "line %d: unknown key '%.40s'", lineno, key);
            rc = -2;
            break;
        }
        errno = 0;
        long v = strtol(value, &end, 10);
        if (*value == '\0' || *end != '\0' || errno != 0 || v < keys[k].min || v > keys[k].max) {
            snprintf(err, errlen, "line %d: %s must be an integer in %ld..%ld", lineno, key, keys[k].min,
                     keys[k].max);
            rc = -2;
            break;
        }
        *(long *)((char *)m + keys[k].offset) = v;
    }
    if (rc == 0 && ferror(f)) {
        snprintf(err, errlen, "%s", strerror(errno ? errno : EIO));
        rc = -1;
    }
    fclose(f);
    if (rc == 0 && (m->embed_dim == 0 || m->image_tokens == 0)) {
        snprintf(err, errlen, "embed_dim and image_tokens are required");
        rc = -2;
    }
    return rc;
}

/* ------------------------------------------------------------------------------------------------
 * Init / destroy / defaults
 * --------------------------------------------------------------------------------------------- */

API RKLLMParam rkllm_createDefaultParam(void) {
    RKLLMParam p;
    memset(&p, 0, sizeof p);
    p.model_path = NULL;
    p.max_context_len = 512;  /* not documented; the test runtime's choice */
    p.max_new_tokens = -1;    /* not documented; <= 0 means "until the text ends" here */
    p.top_k = 40;
    p.n_keep = -1;
    p.top_p = 0.9f;
    p.temperature = 0.8f;
    p.repeat_penalty = 1.1f;
    p.frequency_penalty = 0.0f;
    p.presence_penalty = 0.0f;
    p.mirostat = 0;
    p.mirostat_tau = 5.0f;
    p.mirostat_eta = 0.1f;
    p.skip_special_token = false;
    p.is_async = false;
    p.extend_param.base_domain_id = 0;
    p.extend_param.embed_flash = 0;
    p.extend_param.enabled_cpus_num = 4;
    p.extend_param.enabled_cpus_mask = 0;
    p.extend_param.n_batch = 1;
    p.extend_param.use_cross_attn = 0;
    return p;
}

static void log_init(const RKLLMParam *param, bool callback_set, int handle_id, const char *error) {
    Buf b;
    log_begin(&b, "rkllm_init", handle_id);
    if (param != NULL) {
        jstr(&b, "model_path", param->model_path);
        jint(&b, "max_context_len", param->max_context_len);
        jint(&b, "max_new_tokens", param->max_new_tokens);
        jint(&b, "top_k", param->top_k);
        jint(&b, "n_keep", param->n_keep);
        jfloat(&b, "top_p", param->top_p);
        jfloat(&b, "temperature", param->temperature);
        jfloat(&b, "repeat_penalty", param->repeat_penalty);
        jbool(&b, "skip_special_token", param->skip_special_token);
#if RKLLM_ABI == 13
        jbool(&b, "ignore_eos_token", param->ignore_eos_token);
#endif
        jbool(&b, "is_async", param->is_async);
#if RKLLM_ABI == 12
        jstr(&b, "img_start", param->img_start);
        jstr(&b, "img_end", param->img_end);
        jstr(&b, "img_content", param->img_content);
#endif
        const RKLLMExtendParam *e = &param->extend_param;
        jint(&b, "base_domain_id", e->base_domain_id);
        jint(&b, "embed_flash", e->embed_flash);
        jint(&b, "enabled_cpus_num", e->enabled_cpus_num);
        jint(&b, "enabled_cpus_mask", e->enabled_cpus_mask);
        jint(&b, "n_batch", e->n_batch);
        jint(&b, "use_cross_attn", e->use_cross_attn);
    }
    jbool(&b, "callback", callback_set);
    jbool(&b, "accepted", error == NULL);
    jstr(&b, "error", error);
    log_write(&b);
}

/* Prints "E rkllm: <msg>", logs the call and returns -1. */
static int init_fail(LLMHandle *handle, const RKLLMParam *param, bool callback_set, const char *msg) {
    fprintf(stderr, "E rkllm: %s\n", msg);
    if (handle != NULL) *handle = NULL;
    log_init(param, callback_set, 0, msg);
    return -1;
}

#if RKLLM_ABI == 13
API int rkllm_init(LLMHandle *handle, RKLLMParam *param, RKLLMCallback *callback) {
    LLMResultCallback result_callback = callback != NULL ? callback->result_callback : NULL;
    void *result_userdata = callback != NULL ? callback->result_userdata : NULL;
#else
API int rkllm_init(LLMHandle *handle, RKLLMParam *param, LLMResultCallback callback) {
    LLMResultCallback result_callback = callback;
    void *result_userdata = NULL;
#endif
    bool cb_set = result_callback != NULL;
    fprintf(stderr, "I rkllm: rkllm-runtime version: " RUNTIME_VERSION
                    " (edge_vlm test runtime), rknpu driver version: 0.9.8, platform: RK3588\n");
    if (handle == NULL) return init_fail(handle, param, cb_set, "rkllm_init: handle pointer is NULL");
    if (param == NULL) return init_fail(handle, param, cb_set, "rkllm_init: param is NULL");
    if (!cb_set) return init_fail(handle, param, cb_set, "rkllm_init: result callback is NULL");
    if (param->model_path == NULL) return init_fail(handle, param, cb_set, "rkllm_init: model_path is NULL");

    char why[300], msg[900];
    Model model;
    int rc = load_model(param->model_path, &model, why, sizeof why);
    if (rc == -1) {
        snprintf(msg, sizeof msg, "failed to open rkllm model file %.500s: %s", param->model_path, why);
        return init_fail(handle, param, cb_set, msg);
    }
    if (rc == -2) {
        snprintf(msg, sizeof msg, "invalid rknn llm model magic: %.500s: %s (edge_vlm test runtime model file)",
                 param->model_path, why);
        return init_fail(handle, param, cb_set, msg);
    }
    fprintf(stderr,
            "I rkllm: rkllm-toolkit version: " RUNTIME_VERSION
            ", max_context_limit: %ld, npu_core_num: %ld, target_platform: RK3588, model_dtype: W8A8\n",
            model.max_context_limit, model.npu_cores);
    const RKLLMExtendParam *e = &param->extend_param;
    if (e->enabled_cpus_num < model.npu_cores)
        return init_fail(handle, param, cb_set,
                         "The number of enabled CPUs must be greater than or equal to the number of NPU cores.");
    if (param->max_context_len <= 0 || param->max_context_len > model.max_context_limit) {
        snprintf(msg, sizeof msg, "max_context_len (%d) must be > 0 and <= max_context_limit (%ld)",
                 (int)param->max_context_len, model.max_context_limit);
        return init_fail(handle, param, cb_set, msg);
    }
    if (e->n_batch > 1) return init_fail(handle, param, cb_set, "n_batch > 1 is not supported by the test runtime");

    Fake *h = calloc(1, sizeof *h);
    if (h == NULL) return init_fail(handle, param, cb_set, "out of memory");
    pthread_mutex_init(&h->lock, NULL);
    atomic_init(&h->abort_requested, 0);
    h->model = model;
    h->max_context_len = param->max_context_len;
    h->max_new_tokens = param->max_new_tokens;
    h->callback = result_callback;
    h->callback_userdata = result_userdata;
#if RKLLM_ABI == 12
    h->img_start = dup_or_null(param->img_start);
    h->img_end = dup_or_null(param->img_end);
    h->img_content = dup_or_null(param->img_content);
#endif
    pthread_mutex_lock(&registry_lock);
    h->id = next_handle_id++;
    h->next = registry;
    registry = h;
    pthread_mutex_unlock(&registry_lock);

    Buf cpus = {0};
    int listed = 0;
    for (int c = 0; c < 8; c++)
        if (e->enabled_cpus_mask & (1u << c)) buf_fmt(&cpus, "%s%d", listed++ ? ", " : "", c);
    fprintf(stderr, "I rkllm: Enabled cpus: [%s]\nI rkllm: Enabled cpus num: %d\n", cpus.data ? cpus.data : "",
            e->enabled_cpus_num);
    free(cpus.data);
    *handle = h;
    log_init(param, cb_set, h->id, NULL);
    return 0;
}

API int rkllm_destroy(LLMHandle handle) {
    pthread_mutex_lock(&registry_lock);
    Fake **link = &registry;
    while (*link != NULL && (void *)*link != handle) link = &(*link)->next;
    Fake *h = *link;
    if (h == NULL) {
        pthread_mutex_unlock(&registry_lock);
        fprintf(stderr, "E rkllm: rkllm_destroy: invalid handle %p\n", handle);
        return -1;
    }
    pthread_mutex_lock(&h->lock);
    if (h->running) {
        pthread_mutex_unlock(&h->lock);
        pthread_mutex_unlock(&registry_lock);
        fprintf(stderr, "E rkllm: rkllm_destroy: a task is running on this handle; abort it first\n");
        return -1;
    }
    *link = h->next;
    pthread_mutex_unlock(&h->lock);
    pthread_mutex_unlock(&registry_lock);
    Buf b;
    log_begin(&b, "rkllm_destroy", h->id);
    log_write(&b);
    pthread_mutex_destroy(&h->lock);
#if RKLLM_ABI == 12
    free(h->img_start), free(h->img_end), free(h->img_content);
#endif
    free(h);
    return 0;
}

/* ------------------------------------------------------------------------------------------------
 * rkllm_run
 * --------------------------------------------------------------------------------------------- */

typedef struct {
    int state; /* RKLLM_RUN_NORMAL or RKLLM_RUN_WAITING (text NULL) */
    size_t off, len;
} Event;

typedef struct {
    Event *items;
    size_t n, cap;
} Events;

static void ev_add(Events *ev, int state, size_t off, size_t len) {
    if (ev->n == ev->cap) {
        ev->cap = ev->cap ? ev->cap * 2 : 64;
        Event *items = realloc(ev->items, ev->cap * sizeof *items);
        if (items == NULL) abort();
        ev->items = items;
    }
    ev->items[ev->n++] = (Event){state, off, len};
}

/* Tokens of text[from:to]: leading whitespace + one word, cut into <= 8-byte pieces on UTF-8 boundaries. */
static void tokenize(Events *ev, const char *text, size_t from, size_t to) {
    size_t p = from;
    while (p < to) {
        size_t s = p;
        while (p < to && isspace((unsigned char)text[p])) p++;
        while (p < to && !isspace((unsigned char)text[p])) p++;
        for (size_t q = s; q < p;) {
            size_t e = q + 8 < p ? q + 8 : p;
            while (e < p && ((unsigned char)text[e] & 0xC0) == 0x80) e++;
            ev_add(ev, RKLLM_RUN_NORMAL, q, e - q);
            q = e;
        }
    }
}

/*
 * The TEXT of the last complete directive "<tag>TEXT]]" ("[[reply:", "[[see:") in the prompt (a pointer into it,
 * its length in *len), or NULL.
 * Directives are read left to right; TEXT ends at the first "]]", except that "]]]" leaves its first ']' in
 * TEXT (TEXT can't contain "]]", so it can end with at most one ']'). An unterminated "[[reply:" is ignored.
 */
static const char *find_directive(const char *prompt, const char *tag, size_t *len) {
    const char *found = NULL;
    for (const char *p = strstr(prompt, tag); p != NULL;) {
        const char *t = p + strlen(tag);
        const char *close = strstr(t, "]]");
        if (close == NULL) break;
        if (close[2] == ']') close++;
        found = t;
        *len = (size_t)(close - t);
        p = strstr(close + 2, tag);
    }
    return found;
}

static size_t count_occurrences(const char *s, const char *needle) {
    size_t n = 0, len = strlen(needle);
    for (const char *p = strstr(s, needle); p != NULL; p = strstr(p + len, needle)) n++;
    return n;
}

static int count_words(const char *s) {
    int n = 0;
    bool in_word = false;
    for (; *s; s++) {
        bool space = isspace((unsigned char)*s);
        if (!space && !in_word) n++;
        in_word = !space;
    }
    return n;
}

/* The prompt with every "<image>" removed, trimmed (malloc'd). */
static char *clean_prompt(const char *prompt) {
    Buf b = {0};
    buf_str(&b, "");
    const char *p = prompt;
    for (const char *hit = strstr(p, "<image>"); hit != NULL; hit = strstr(p, "<image>")) {
        buf_add(&b, p, (size_t)(hit - p));
        p = hit + strlen("<image>");
    }
    buf_str(&b, p);
    char *t = trim(b.data);
    memmove(b.data, t, strlen(t) + 1);
    return b.data;
}

static void log_run(const Fake *h, const RKLLMInput *in, const RKLLMInferParam *ip, const char *signature,
                    const char *error) {
    Buf b;
    log_begin(&b, "rkllm_run", h != NULL ? h->id : 0);
    if (in != NULL) {
        jint(&b, "input_type", in->input_type);
        jstr(&b, "role", in->role);
        jbool(&b, "enable_thinking", in->enable_thinking);
        if (in->input_type == RKLLM_INPUT_PROMPT) jstr(&b, "prompt", in->prompt_input);
        if (in->input_type == RKLLM_INPUT_MULTIMODAL) {
            const RKLLMMultiModalInput *mm = &in->multimodal_input;
            jstr(&b, "prompt", mm->prompt);
#if RKLLM_ABI == 13
            jint(&b, "n_image", (long long)mm->image.n_image);
            jint(&b, "n_image_tokens", (long long)mm->image.n_image_tokens);
            jint(&b, "image_width", (long long)mm->image.image_width);
            jint(&b, "image_height", (long long)mm->image.image_height);
            jstr(&b, "image_start", mm->image.image_start);
            jstr(&b, "image_end", mm->image.image_end);
            jstr(&b, "image_content", mm->image.image_content);
            jint(&b, "n_video", (long long)mm->video.n_video);
#else
            jint(&b, "n_image", (long long)mm->n_image);
            jint(&b, "n_image_tokens", (long long)mm->n_image_tokens);
            jint(&b, "image_width", (long long)mm->image_width);
            jint(&b, "image_height", (long long)mm->image_height);
            jstr(&b, "image_start", h != NULL ? h->img_start : NULL);
            jstr(&b, "image_end", h != NULL ? h->img_end : NULL);
            jstr(&b, "image_content", h != NULL ? h->img_content : NULL);
#endif
            jstr(&b, "embed_signature", signature);
        }
    }
    if (ip != NULL) {
        jint(&b, "mode", ip->mode);
        jint(&b, "keep_history", ip->keep_history);
        jbool(&b, "lora_params", ip->lora_params != NULL);
        jbool(&b, "prompt_cache_params", ip->prompt_cache_params != NULL);
#if RKLLM_ABI == 13
        jint(&b, "max_new_tokens", ip->max_new_tokens);
        if (ip->sampling_params != NULL) {
            const RKLLMSamplingParam *sp = ip->sampling_params;
            json_key(&b, "sampling_params");
            Buf inner;
            memset(&inner, 0, sizeof inner);
            buf_str(&inner, "{");
            jint(&inner, "top_k", sp->top_k);
            jfloat(&inner, "top_p", sp->top_p);
            jfloat(&inner, "temperature", sp->temperature);
            jfloat(&inner, "repeat_penalty", sp->repeat_penalty);
            buf_str(&inner, "}");
            buf_add(&b, inner.data, inner.len);
            free(inner.data);
        } else {
            jnull(&b, "sampling_params");
        }
#endif
    }
    jbool(&b, "accepted", error == NULL);
    jstr(&b, "error", error);
    log_write(&b);
}

/* Sleeps ms in 10 ms slices; true if rkllm_abort was called meanwhile. */
static bool sleep_abortable(Fake *h, long ms) {
    for (long left = ms; left > 0; left -= 10) {
        if (atomic_load(&h->abort_requested)) return true;
        sleep_ms(left < 10 ? left : 10);
    }
    return atomic_load(&h->abort_requested) != 0;
}

/* The run is over: the KV cache holds kv_size tokens, and (if it holds any) the image `image` when this
 * run had one, else the image it held before. */
static void end_run(Fake *h, int kv_size, const char *image) {
    pthread_mutex_lock(&h->lock);
    h->kv_size = kv_size;
    if (kv_size == 0) h->kv_image[0] = '\0';
    else if (image != NULL && *image != '\0') snprintf(h->kv_image, sizeof h->kv_image, "%s", image);
    h->running = 0;
    pthread_mutex_unlock(&h->lock);
}

static void log_done(const Fake *h, int image_tokens, int prompt_tokens, int generated, int kv_before, int kv_after,
                     bool finished, bool paused) {
    Buf b;
    log_begin(&b, "rkllm_run_done", h->id);
    jint(&b, "image_tokens", image_tokens);
    jint(&b, "prompt_tokens", prompt_tokens);
    jint(&b, "generated_tokens", generated);
    jint(&b, "kv_before", kv_before);
    jint(&b, "kv_after", kv_after);
    jbool(&b, "finished", finished);
    jbool(&b, "paused", paused);
    log_write(&b);
}

/* Validation of a run. Returns an error message, or NULL when the input is acceptable. */
static const char *check_run(const Fake *h, const RKLLMInput *in, const RKLLMInferParam *ip, char *msg, size_t n) {
    if (in == NULL) return "rkllm_run: input is NULL";
    if (ip == NULL) return "rkllm_run: infer_params is NULL";
    if (ip->mode != RKLLM_INFER_GENERATE) {
        snprintf(msg, n, "rkllm_run: infer mode %d is not supported by the test runtime (only GENERATE=0)",
                 (int)ip->mode);
        return msg;
    }
    if (in->input_type == RKLLM_INPUT_PROMPT) return in->prompt_input == NULL ? "rkllm_run: prompt_input is NULL" : NULL;
    if (in->input_type != RKLLM_INPUT_MULTIMODAL) {
        snprintf(msg, n, "rkllm_run: input_type %d is not supported by the test runtime", (int)in->input_type);
        return msg;
    }
    const RKLLMMultiModalInput *mm = &in->multimodal_input;
#if RKLLM_ABI == 13
    const float *embed = mm->image.image_embed;
    size_t n_image = mm->image.n_image, n_tokens = mm->image.n_image_tokens;
    size_t width = mm->image.image_width, height = mm->image.image_height;
    const char *tags[3] = {mm->image.image_start, mm->image.image_end, mm->image.image_content};
    if (mm->video.n_video != 0) return "rkllm_run: video input is not supported by the test runtime";
#else
    const float *embed = mm->image_embed;
    size_t n_image = mm->n_image, n_tokens = mm->n_image_tokens;
    size_t width = mm->image_width, height = mm->image_height;
    const char *tags[3] = {h->img_start, h->img_end, h->img_content};
#endif
    if (mm->prompt == NULL) return "rkllm_run: multimodal prompt is NULL";
    size_t tags_in_prompt = count_occurrences(mm->prompt, "<image>");
    if (tags_in_prompt == 0)
        return "rkllm_run: the multimodal prompt must contain the <image> placeholder";
    if (n_image != tags_in_prompt) {
        snprintf(msg, n, "rkllm_run: n_image (%zu) != number of <image> tags in the prompt (%zu)", n_image,
                 tags_in_prompt);
        return msg;
    }
    if (embed == NULL) return "rkllm_run: image_embed is NULL";
    if (n_tokens != (size_t)h->model.image_tokens) {
        snprintf(msg, n, "rkllm_run: n_image_tokens (%zu) != the model's image tokens (%ld)", n_tokens,
                 h->model.image_tokens);
        return msg;
    }
    if (width == 0 || height == 0) return "rkllm_run: image_width/image_height must not be 0";
    if (tags[0] == NULL || tags[1] == NULL || tags[2] == NULL)
        return "rkllm_run: image_start/image_end/image_content must be set for multimodal input";
    return NULL;
}

static int reject_run(Fake *h, const RKLLMInput *in, const RKLLMInferParam *ip, const char *error) {
    fprintf(stderr, "E rkllm: %s\n", error);
    log_run(h, in, ip, NULL, error);
    return -1;
}

API int rkllm_run(LLMHandle handle, RKLLMInput *in, RKLLMInferParam *ip, void *userdata) {
    Fake *h = acquire(handle, "rkllm_run");
    if (h == NULL) {
        log_run(NULL, in, ip, NULL, "rkllm_run: invalid handle");
        return -1;
    }
    if (h->running) {
        release(h);
        return reject_run(h, in, ip, "rkllm_run: another task is running on this handle");
    }
    h->running = 1;
    atomic_store(&h->abort_requested, 0);
    int kv_before = h->kv_size;
    char kv_image[9];
    memcpy(kv_image, h->kv_image, sizeof kv_image);
    release(h);

    char msg[300];
    const char *error = check_run(h, in, ip, msg, sizeof msg);
    if (error != NULL) {
        end_run(h, kv_before, NULL);
        return reject_run(h, in, ip, error);
    }

    double t0 = now_ms();
    const char *prompt;
    Buf text = {0};
    char signature[9] = "";
    int image_tokens = 0;
    if (in->input_type == RKLLM_INPUT_MULTIMODAL) {
        const RKLLMMultiModalInput *mm = &in->multimodal_input;
#if RKLLM_ABI == 13
        const float *embed = mm->image.image_embed;
        size_t n_image = mm->image.n_image, width = mm->image.image_width, height = mm->image.image_height;
        const char *start = mm->image.image_start, *end = mm->image.image_end, *content = mm->image.image_content;
#else
        const float *embed = mm->image_embed;
        size_t n_image = mm->n_image, width = mm->image_width, height = mm->image_height;
        const char *start = h->img_start, *end = h->img_end, *content = h->img_content;
#endif
        /* reads every float: n_image x image_tokens x embed_dim (an undersized buffer is a bug to find) */
        size_t floats = n_image * (size_t)h->model.image_tokens * (size_t)h->model.embed_dim;
        snprintf(signature, sizeof signature, "%08x", (unsigned)crc32_bytes(embed, floats * sizeof(float)));
        image_tokens = (int)(n_image * (size_t)h->model.image_tokens);
        prompt = mm->prompt;
        buf_fmt(&text, "Test runtime saw %d image tokens, signature %s, tags %s|%s|%s, %zux%zu:", image_tokens,
                signature, start, end, content, width, height);
    } else {
        prompt = in->prompt_input;
        if (*kv_image != '\0')
            buf_fmt(&text, "Test runtime answered from the image in its cache, signature %s:", kv_image);
        else
            buf_str(&text, "Test runtime read a text prompt:");
    }
    const char *sig = in->input_type == RKLLM_INPUT_MULTIMODAL ? signature : NULL;
    char *body = clean_prompt(prompt);
    if (*body != '\0') buf_str(&text, " "), buf_str(&text, body);
    int prefill_tokens = image_tokens + count_words(body);
    free(body);
    if (kv_before + prefill_tokens > h->max_context_len) {
        snprintf(msg, sizeof msg, "rkllm_run: %d prefill tokens after the %d in the KV cache exceed max_context_len (%d)",
                 prefill_tokens, kv_before, (int)h->max_context_len);
        fprintf(stderr, "E rkllm: %s\n", msg);
        log_run(h, in, ip, sig, msg);
        free(text.data);
        end_run(h, kv_before, NULL);
        return -1;
    }
    log_run(h, in, ip, sig, NULL);

    Events ev = {0};
    size_t reply_len = 0;
    const char *reply = find_directive(prompt, "[[reply:", &reply_len);
    size_t see_len = 0;
    const char *see = find_directive(prompt, "[[see:", &see_len);
    if (see != NULL) { /* [[see:TEXT]]: TEXT if an image is in the context (this input's or the cache's) */
        static const char blind[] = "I see no image.";
        bool seen = in->input_type == RKLLM_INPUT_MULTIMODAL || *kv_image != '\0';
        reply = seen ? see : blind;
        reply_len = seen ? see_len : strlen(blind);
    }
    if (reply != NULL) { /* [[reply:TEXT]]: exactly TEXT, tokenized like the derived text, no " Café … ok" */
        text.len = 0;
        buf_add(&text, reply, reply_len);
        tokenize(&ev, text.data, 0, text.len);
    } else {
        tokenize(&ev, text.data, 0, text.len);
        /* " Café … ok": é arrives as WAITING (text NULL) + NORMAL "é"; … is split over two NORMAL callbacks */
        size_t at = text.len;
        buf_str(&text, " Caf\xc3\xa9 \xe2\x80\xa6 ok");
        ev_add(&ev, RKLLM_RUN_NORMAL, at, 4);            /* " Caf" */
        ev_add(&ev, RKLLM_RUN_WAITING, at + 4, 0);       /* (NULL) */
        ev_add(&ev, RKLLM_RUN_NORMAL, at + 4, 2);        /* "é" */
        ev_add(&ev, RKLLM_RUN_NORMAL, at + 6, 2);        /* " \xe2" */
        ev_add(&ev, RKLLM_RUN_NORMAL, at + 8, 2);        /* "\x80\xa6" */
        ev_add(&ev, RKLLM_RUN_NORMAL, at + 10, 3);       /* " ok" */
    }

    bool directive_error = strstr(prompt, "[[error]]") != NULL;
    bool directive_segfault = strstr(prompt, "[[segfault]]") != NULL;
    bool directive_hang = strstr(prompt, "[[hang]]") != NULL;
    long delay = strstr(prompt, "[[slow]]") != NULL ? 200 : h->model.token_delay_ms;
    int limit = h->max_new_tokens;
#if RKLLM_ABI == 13
    if (ip->max_new_tokens > 0) limit = ip->max_new_tokens;
    void *ud = userdata != NULL ? userdata : h->callback_userdata;
#else
    void *ud = userdata;
#endif
    RKLLMResult *r = &h->result;

    if (directive_error) {
        memset(r, 0, sizeof *r);
        r->token_id = -1;
        fprintf(stderr, "E rkllm: rkllm_run: [[error]] directive: reporting RKLLM_RUN_ERROR\n");
        h->callback(r, ud, RKLLM_RUN_ERROR);
        memset(r, 0, sizeof *r);
        free(text.data), free(ev.items);
        end_run(h, kv_before, NULL);
        return -1;
    }

    double t1 = now_ms();
    int normal = 0, generated = 0;
    bool stopped = false;                /* paused by the callback or aborted: no FINISH */
    bool abortable = !directive_hang;    /* [[hang]] ignores rkllm_abort */
    for (size_t i = 0; i < ev.n; i++) {
        if (limit > 0 && normal >= limit) break;
        if (abortable && ((delay > 0 && sleep_abortable(h, delay)) || atomic_load(&h->abort_requested))) {
            stopped = true;
            break;
        }
        if (!abortable && delay > 0) sleep_ms(delay);
        const Event *e = &ev.items[i];
        memset(r, 0, sizeof *r);
        r->token_id = 1000 + generated;
        if (e->state == RKLLM_RUN_NORMAL) {
            memcpy(h->text, text.data + e->off, e->len);
            h->text[e->len] = '\0';
            r->text = h->text;
            normal++;
        }
        generated++;
        int rc = h->callback(r, ud, (LLMCallState)e->state);
        memset(h->text, '~', TOKEN_BUF - 1); /* a pointer kept past the callback now reads garbage */
        h->text[TOKEN_BUF - 1] = '\0';
        memset(r, 0, sizeof *r);
        if (directive_segfault && normal == 1) {
            fprintf(stderr, "E rkllm: [[segfault]] directive: raising SIGSEGV\n");
            signal(SIGSEGV, SIG_DFL);
            raise(SIGSEGV);
        }
        if (directive_hang && normal == 1) {
            fprintf(stderr, "W rkllm: [[hang]] directive: rkllm_run never returns\n");
            for (;;) sleep_ms(1000);
        }
        if (rc == 1 || (abortable && atomic_load(&h->abort_requested))) {
            stopped = true;
            break;
        }
    }
    double t2 = now_ms();
    int kv_after = kv_before + prefill_tokens + generated;
    bool finished = !stopped;
    if (!stopped) {
        struct rusage ru;
        memset(&ru, 0, sizeof ru);
        getrusage(RUSAGE_SELF, &ru);
        memset(r, 0, sizeof *r);
        r->token_id = -1;
        r->perf.prefill_time_ms = (float)(t1 - t0);
        r->perf.prefill_tokens = prefill_tokens;
        r->perf.generate_time_ms = (float)(t2 - t1);
        r->perf.generate_tokens = generated;
        r->perf.memory_usage_mb = (float)ru.ru_maxrss / 1024.0f;
        h->callback(r, ud, RKLLM_RUN_FINISH);
        memset(r, 0, sizeof *r);
    }
    free(text.data), free(ev.items);
    /* keep_history 0 clears the cache after the run, except when the callback paused it (RKLLM SDK documentation, rkllm_run) */
    bool paused_by_callback = stopped && !atomic_load(&h->abort_requested);
    int kv_kept = ip->keep_history != 0 || paused_by_callback ? kv_after : 0;
    log_done(h, image_tokens, prefill_tokens - image_tokens, generated, kv_before, kv_kept, finished, paused_by_callback);
    end_run(h, kv_kept, sig);
    return 0;
}

API int rkllm_run_async(LLMHandle handle, RKLLMInput *in, RKLLMInferParam *ip, void *userdata) {
    (void)handle, (void)in, (void)ip, (void)userdata;
    fprintf(stderr, "E rkllm: async not supported by the test runtime\n");
    return -1;
}

/* ------------------------------------------------------------------------------------------------
 * The rest of the API
 * --------------------------------------------------------------------------------------------- */

API int rkllm_abort(LLMHandle handle) {
    Fake *h = acquire(handle, "rkllm_abort");
    if (h == NULL) return -1;
    atomic_store(&h->abort_requested, 1);
    int id = h->id, running = h->running;
    release(h);
    Buf b;
    log_begin(&b, "rkllm_abort", id);
    jbool(&b, "running", running != 0);
    log_write(&b);
    return 0;
}

/* 1.3.0 documents "1 if a task is running"; 1.2.x documents "0 if a task is running, non-zero otherwise". */
API int rkllm_is_running(LLMHandle handle) {
    Fake *h = acquire(handle, "rkllm_is_running");
    if (h == NULL) return -1;
    int running = h->running;
    release(h);
#if RKLLM_ABI == 13
    return running ? 1 : 0;
#else
    return running ? 0 : 1;
#endif
}

API int rkllm_clear_kv_cache(LLMHandle handle, int keep_system_prompt, int *start_pos, int *end_pos) {
    (void)start_pos, (void)end_pos;
    Fake *h = acquire(handle, "rkllm_clear_kv_cache");
    if (h == NULL) return -1;
    int rc = 0;
    if (h->running) {
        fprintf(stderr, "E rkllm: rkllm_clear_kv_cache: a task is running on this handle\n");
        rc = -1;
    } else {
        h->kv_size = 0;
        h->kv_image[0] = '\0';
    }
    int id = h->id;
    release(h);
    Buf b;
    log_begin(&b, "rkllm_clear_kv_cache", id);
    jint(&b, "keep_system_prompt", keep_system_prompt);
    jbool(&b, "accepted", rc == 0);
    log_write(&b);
    return rc;
}

API int rkllm_get_kv_cache_size(LLMHandle handle, int *cache_sizes) {
    if (cache_sizes == NULL) {
        fprintf(stderr, "E rkllm: rkllm_get_kv_cache_size: cache_sizes is NULL\n");
        return -1;
    }
    Fake *h = acquire(handle, "rkllm_get_kv_cache_size");
    if (h == NULL) return -1;
    cache_sizes[0] = h->kv_size;
    release(h);
    return 0;
}

API int rkllm_set_chat_template(LLMHandle handle, const char *system_prompt, const char *prompt_prefix,
                                const char *prompt_postfix) {
    Fake *h = acquire(handle, "rkllm_set_chat_template");
    if (h == NULL) return -1;
    int id = h->id;
    release(h);
    Buf b;
    log_begin(&b, "rkllm_set_chat_template", id);
    jstr(&b, "system_prompt", system_prompt);
    jstr(&b, "prompt_prefix", prompt_prefix);
    jstr(&b, "prompt_postfix", prompt_postfix);
    log_write(&b);
    return 0;
}

static int simple_call(LLMHandle handle, const char *fn) {
    Fake *h = acquire(handle, fn);
    if (h == NULL) return -1;
    release(h);
    return 0;
}

API int rkllm_set_function_tools(LLMHandle handle, const char *system_prompt, const char *tools,
                                 const char *tool_response_str) {
    (void)system_prompt, (void)tool_response_str;
    if (tools == NULL) {
        fprintf(stderr, "E rkllm: rkllm_set_function_tools: tools is NULL\n");
        return -1;
    }
    return simple_call(handle, "rkllm_set_function_tools");
}

API int rkllm_set_cross_attn_params(LLMHandle handle, RKLLMCrossAttnParam *cross_attn_params) {
    if (cross_attn_params == NULL) {
        fprintf(stderr, "E rkllm: rkllm_set_cross_attn_params: params is NULL\n");
        return -1;
    }
    return simple_call(handle, "rkllm_set_cross_attn_params");
}

API int rkllm_load_lora(LLMHandle handle, RKLLMLoraAdapter *lora_adapter) {
    if (lora_adapter == NULL || lora_adapter->lora_adapter_path == NULL) {
        fprintf(stderr, "E rkllm: rkllm_load_lora: no adapter path\n");
        return -1;
    }
    return simple_call(handle, "rkllm_load_lora");
}

API int rkllm_load_prompt_cache(LLMHandle handle, const char *prompt_cache_path) {
    if (prompt_cache_path == NULL || access(prompt_cache_path, R_OK) != 0) {
        fprintf(stderr, "E rkllm: rkllm_load_prompt_cache: cannot read %s\n",
                prompt_cache_path ? prompt_cache_path : "(null)");
        return -1;
    }
    return simple_call(handle, "rkllm_load_prompt_cache");
}

API int rkllm_release_prompt_cache(LLMHandle handle) { return simple_call(handle, "rkllm_release_prompt_cache"); }
