/* Crescent wire protocol - generated from the message catalogue (protocols/SPEC.md). Do not edit. */
#ifndef CRESCENT_WIRE_H
#define CRESCENT_WIRE_H
#include <stdint.h>

#define CRESCENT_PROTOCOL_VERSION 2u
#define CRESCENT_HEADER_SIZE 7u
#define CRESCENT_MAX_PAYLOAD 640u
#define CRESCENT_MAX_FRAME 666u
#define CRESCENT_MAX_ENCODED 669u
#define CRESCENT_CRC32C_POLY_REFLECTED 0x82F63B78u
#define CRESCENT_CRC32C_CHECK 0xE3069283u
#define CRESCENT_FLAG_ACK_REQ 0x01u
#define CRESCENT_FLAG_RESPONSE 0x02u
#define CRESCENT_FLAG_SYN 0x04u
#define CRESCENT_FLAG_RETRANSMIT 0x08u
#define CRESCENT_FLAG_SIGNED 0x10u
#define CRESCENT_FLAGS_RESERVED 0xE0u
#define CRESCENT_MAX_FRAME_UNSIGNED 651u

/* Signed links (SPEC.md section 2.6): signature block between payload and CRC. */
#define CRESCENT_SIGNATURE_SIZE 15u /* link_id u8, timestamp u48 LE, tag */
#define CRESCENT_TAG_SIZE 8u /* HMAC-SHA256(key, header+payload+link_id+timestamp)[:8] */
#define CRESCENT_LINK_KEY_SIZE 32u
#define CRESCENT_DEVICE_LINK_ID 0u
#define CRESCENT_STALE_WINDOW_TICKS 6000000u /* 10 us ticks */
#define CRESCENT_SIGNING_EPOCH_UNIX_S 1420070400u

/* Link timing, queue and de-duplication constants (SPEC.md section 2.4): defaults. */
#define CRESCENT_HEARTBEAT_PERIOD_MS 100u
#define CRESCENT_WATCHDOG_TIMEOUT_MS 500u
#define CRESCENT_WATCHDOG_TIMEOUT_MIN_MS 50u
#define CRESCENT_WATCHDOG_TIMEOUT_MAX_MS 10000u
#define CRESCENT_SAFE_HOLD_WITHIN_MS 100u
#define CRESCENT_ACK_TIMEOUT_MS 100u
#define CRESCENT_MAX_RETRIES 5u
#define CRESCENT_REQUEST_QUEUE 64u
#define CRESCENT_DEDUP_WINDOW 32u
#define CRESCENT_UART_BAUD 921600u
#define CRESCENT_TELEMETRY_PERIOD_MS 20u
#define CRESCENT_DATA_CHANNEL_MAX_LINE 256u
#define CRESCENT_DATA_CHANNEL_MAX_FRAME 268435456u

/* ARM_PLAN NAK details: record r (0-based), field j -> 1000 * (r + 1) + j; PLAN_INVALID -> 1000 * reason + entry. */
#define CRESCENT_RECORD_FIELD_INDEX(r, j) (1000 * ((r) + 1) + (j))
#define CRESCENT_ARM_PLAN_ENTRY_TUBE_CURRENT 4 /* record field index of the implied tube current */
#define CRESCENT_PLAN_INVALID_DETAIL(reason, entry) (1000 * (reason) + (entry))

#define CRESCENT_MSG_HELLO 0x01u
#define CRESCENT_MSG_HELLO_REPLY 0x02u
#define CRESCENT_MSG_ACK 0x03u
#define CRESCENT_MSG_NAK 0x04u
#define CRESCENT_MSG_HEARTBEAT 0x05u
#define CRESCENT_MSG_GET_STATUS 0x06u
#define CRESCENT_MSG_STATUS 0x07u
#define CRESCENT_MSG_GET_INFO 0x08u
#define CRESCENT_MSG_DEVICE_INFO 0x09u
#define CRESCENT_MSG_GET_LIMITS 0x0Au
#define CRESCENT_MSG_LIMITS_INFO 0x0Bu
#define CRESCENT_MSG_HOME 0x10u
#define CRESCENT_MSG_MOVE_ARC 0x11u
#define CRESCENT_MSG_COMPRESS 0x12u
#define CRESCENT_MSG_RELEASE 0x13u
#define CRESCENT_MSG_SET_TECHNIQUE 0x14u
#define CRESCENT_MSG_ARM_PLAN 0x15u
#define CRESCENT_MSG_FIRE 0x16u
#define CRESCENT_MSG_ABORT 0x17u
#define CRESCENT_MSG_RESET_FAULT 0x18u
#define CRESCENT_MSG_SET_TELEMETRY 0x19u
#define CRESCENT_MSG_SIM_SET_INPUT 0x30u
#define CRESCENT_MSG_SIM_INJECT_FAULT 0x31u
#define CRESCENT_MSG_TELEMETRY 0x40u
#define CRESCENT_MSG_STATE_CHANGED 0x41u
#define CRESCENT_MSG_EXPOSURE_DONE 0x42u
#define CRESCENT_MSG_IMAGE_READY 0x43u
#define CRESCENT_MSG_INTERLOCK_CHANGED 0x44u
#define CRESCENT_MSG_FAULT 0x45u
#define CRESCENT_MSG_MOTION_DONE 0x46u
#define CRESCENT_MSG_GET_EXPOSURE_LOG 0x1Au
#define CRESCENT_MSG_GET_DATA_TOKEN 0x1Bu
#define CRESCENT_MSG_DATA_TOKEN 0x0Du
#define CRESCENT_MSG_EXPOSURE_LOG 0x0Cu

/* Payload lengths on the wire. A fixed layout's payload is exactly CRESCENT_LEN_<MSG> bytes (0 for
   the empty payloads, which have no struct). A message ending in a string or an array has
   CRESCENT_LEN_<MSG> bytes of scalars plus the u8 length/count byte, then the tail:
   length = CRESCENT_LEN_<MSG> + 1 + n * element size, at most CRESCENT_LEN_MAX_<MSG>. Never send
   sizeof(struct) for those: the struct reserves room for the largest tail. */
#define CRESCENT_LEN_HELLO 14u
#define CRESCENT_LEN_HELLO_REPLY 25u
#define CRESCENT_LEN_ACK 5u
#define CRESCENT_LEN_NAK 7u
#define CRESCENT_LEN_HEARTBEAT 5u
#define CRESCENT_LEN_GET_STATUS 0u
#define CRESCENT_LEN_STATUS 25u
#define CRESCENT_LEN_GET_INFO 0u
#define CRESCENT_LEN_DEVICE_INFO 53u
#define CRESCENT_LEN_MAX_DEVICE_INFO 254u
#define CRESCENT_LEN_GET_LIMITS 0u
#define CRESCENT_LEN_LIMITS_INFO 53u
#define CRESCENT_LEN_HOME 0u
#define CRESCENT_LEN_MOVE_ARC 8u
#define CRESCENT_LEN_COMPRESS 10u
#define CRESCENT_LEN_RELEASE 0u
#define CRESCENT_LEN_SET_TECHNIQUE 6u
#define CRESCENT_LEN_ARM_PLAN 14u
#define CRESCENT_LEN_MAX_ARM_PLAN 631u
#define CRESCENT_LEN_FIRE 6u
#define CRESCENT_LEN_ABORT 1u
#define CRESCENT_LEN_RESET_FAULT 2u
#define CRESCENT_LEN_SET_TELEMETRY 2u
#define CRESCENT_LEN_SIM_SET_INPUT 2u
#define CRESCENT_LEN_SIM_INJECT_FAULT 6u
#define CRESCENT_LEN_TELEMETRY 31u
#define CRESCENT_LEN_STATE_CHANGED 13u
#define CRESCENT_LEN_EXPOSURE_DONE 42u
#define CRESCENT_LEN_IMAGE_READY 17u
#define CRESCENT_LEN_MAX_IMAGE_READY 218u
#define CRESCENT_LEN_INTERLOCK_CHANGED 10u
#define CRESCENT_LEN_FAULT 15u
#define CRESCENT_LEN_MAX_FAULT 136u
#define CRESCENT_LEN_MOTION_DONE 22u
#define CRESCENT_LEN_GET_EXPOSURE_LOG 3u
#define CRESCENT_LEN_GET_DATA_TOKEN 0u
#define CRESCENT_LEN_DATA_TOKEN 4u
#define CRESCENT_LEN_MAX_DATA_TOKEN 69u
#define CRESCENT_LEN_EXPOSURE_LOG 61u
#define CRESCENT_LEN_MAX_EXPOSURE_LOG 262u

enum crescent_devicestate {
    CRESCENT_DEVICESTATE_BOOT = 0,
    CRESCENT_DEVICESTATE_IDLE = 1,
    CRESCENT_DEVICESTATE_BUSY = 2,
    CRESCENT_DEVICESTATE_ARMED = 3,
    CRESCENT_DEVICESTATE_EXPOSING = 4,
    CRESCENT_DEVICESTATE_SAFE_HOLD = 5,
    CRESCENT_DEVICESTATE_FAULT = 6,
};
enum crescent_anodefilter {
    CRESCENT_ANODEFILTER_W_RH = 0,
    CRESCENT_ANODEFILTER_W_AG = 1,
    CRESCENT_ANODEFILTER_W_AL = 2,
    CRESCENT_ANODEFILTER_MO_MO = 3,
    CRESCENT_ANODEFILTER_MO_RH = 4,
    CRESCENT_ANODEFILTER_RH_RH = 5,
};
enum crescent_motionmode {
    CRESCENT_MOTIONMODE_STEP_AND_SHOOT = 0,
    CRESCENT_MOTIONMODE_CONTINUOUS = 1,
};
enum crescent_focalspot {
    CRESCENT_FOCALSPOT_LARGE = 0,
    CRESCENT_FOCALSPOT_SMALL = 1,
};
enum crescent_exposurestatus {
    CRESCENT_EXPOSURESTATUS_OK = 0,
    CRESCENT_EXPOSURESTATUS_BACKUP_TIMER = 1,
    CRESCENT_EXPOSURESTATUS_INTERLOCK = 2,
    CRESCENT_EXPOSURESTATUS_ABORTED = 3,
    CRESCENT_EXPOSURESTATUS_KV_FAULT = 4,
    CRESCENT_EXPOSURESTATUS_WATCHDOG = 5,
};
enum crescent_detectorstate {
    CRESCENT_DETECTORSTATE_IDLE = 0,
    CRESCENT_DETECTORSTATE_READY = 1,
    CRESCENT_DETECTORSTATE_INTEGRATING = 2,
    CRESCENT_DETECTORSTATE_READING_OUT = 3,
    CRESCENT_DETECTORSTATE_ERROR = 4,
};
enum crescent_abortreason {
    CRESCENT_ABORTREASON_OPERATOR = 0,
    CRESCENT_ABORTREASON_FAULT = 1,
    CRESCENT_ABORTREASON_INTERLOCK = 2,
    CRESCENT_ABORTREASON_TIMEOUT = 3,
    CRESCENT_ABORTREASON_HOST_ERROR = 4,
};
enum crescent_siminput {
    CRESCENT_SIMINPUT_DOOR_CLOSED = 0,
    CRESCENT_SIMINPUT_ESTOP_RELEASED = 1,
    CRESCENT_SIMINPUT_HAND_SWITCH = 2,
    CRESCENT_SIMINPUT_PADDLE_PRESENT = 3,
};
enum crescent_planinvalidreason {
    CRESCENT_PLANINVALIDREASON_COUNT = 1,
    CRESCENT_PLANINVALIDREASON_NOT_MONOTONIC = 2,
    CRESCENT_PLANINVALIDREASON_TOO_CLOSE = 3,
    CRESCENT_PLANINVALIDREASON_TRAVEL = 4,
};
enum crescent_faultcode {
    CRESCENT_FAULTCODE_NONE = 0,
    CRESCENT_FAULTCODE_MOTOR_STALL = 1,
    CRESCENT_FAULTCODE_ENCODER_GLITCH = 2,
    CRESCENT_FAULTCODE_FOLLOWING_ERROR = 3,
    CRESCENT_FAULTCODE_TRAVEL_LIMIT = 4,
    CRESCENT_FAULTCODE_KV_DROP = 5,
    CRESCENT_FAULTCODE_TUBE_ARC = 6,
    CRESCENT_FAULTCODE_BACKUP_TIMER = 7,
    CRESCENT_FAULTCODE_DETECTOR_TIMEOUT = 8,
    CRESCENT_FAULTCODE_DEVICE_RESET = 9,
    CRESCENT_FAULTCODE_ESTOP = 10,
    CRESCENT_FAULTCODE_DOOR_OPEN = 11,
    CRESCENT_FAULTCODE_WATCHDOG = 12,
    CRESCENT_FAULTCODE_FORCE_LIMIT = 13,
    CRESCENT_FAULTCODE_HEAT_LIMIT = 14,
    CRESCENT_FAULTCODE_TELEMETRY_STOP = 15,
    CRESCENT_FAULTCODE_LINE_FAULT = 16,
    CRESCENT_FAULTCODE_REALTIME_OVERRUN = 17,
};
enum crescent_error_code {
    CRESCENT_ERR_OK = 0,
    CRESCENT_ERR_UNKNOWN_MESSAGE = 1,
    CRESCENT_ERR_BAD_LENGTH = 2,
    CRESCENT_ERR_OUT_OF_RANGE = 3,
    CRESCENT_ERR_BAD_STATE = 4,
    CRESCENT_ERR_NOT_ARMED = 5,
    CRESCENT_ERR_DIGEST_MISMATCH = 6,
    CRESCENT_ERR_INTERLOCK_OPEN = 7,
    CRESCENT_ERR_HEAT_LIMIT = 8,
    CRESCENT_ERR_BUSY = 9,
    CRESCENT_ERR_FAULT_ACTIVE = 10,
    CRESCENT_ERR_VERSION_MISMATCH = 11,
    CRESCENT_ERR_UNSUPPORTED = 12,
    CRESCENT_ERR_NOT_HOMED = 13,
    CRESCENT_ERR_FORCE_LIMIT = 14,
    CRESCENT_ERR_PLAN_INVALID = 15,
    CRESCENT_ERR_NO_SESSION = 16,
    CRESCENT_ERR_BAD_ENUM = 17,
    CRESCENT_ERR_BAD_FLAGS = 18,
    CRESCENT_ERR_UNSIGNED = 20,
    CRESCENT_ERR_BAD_SIGNATURE = 21,
    CRESCENT_ERR_REPLAYED = 22,
    CRESCENT_ERR_STALE = 23,
    CRESCENT_ERR_BEYOND_LIMITS = 19,
};
#define CRESCENT_INTERLOCK_DOOR_CLOSED (1u << 0)
#define CRESCENT_INTERLOCK_ESTOP_RELEASED (1u << 1)
#define CRESCENT_INTERLOCK_HAND_SWITCH (1u << 2)
#define CRESCENT_INTERLOCK_PADDLE_IN_RANGE (1u << 3)
#define CRESCENT_INTERLOCK_DETECTOR_READY (1u << 4)
#define CRESCENT_INTERLOCK_GENERATOR_READY (1u << 5)
#define CRESCENT_CAP_CONTINUOUS_MOTION (1u << 0)
#define CRESCENT_CAP_STEP_AND_SHOOT (1u << 1)
#define CRESCENT_CAP_POSITION_TRIGGER (1u << 2)
#define CRESCENT_CAP_AEC_SCOUT (1u << 3)
#define CRESCENT_CAP_SIMULATION_CONTROLS (1u << 4)
#define CRESCENT_CAP_FILE_DATA_CHANNEL (1u << 5)
#define CRESCENT_CAP_TCP_DATA_CHANNEL (1u << 6)
#define CRESCENT_CAP_SIGNED_LINK (1u << 7)

#pragma pack(push, 1)
/* Little-endian on the wire; these structs match on little-endian targets. */
typedef struct {
    uint8_t protocol_version;
    uint8_t min_version;
    uint32_t host_capabilities;
    uint32_t session_id;
    uint16_t heartbeat_period_ms;
    uint16_t watchdog_timeout_ms;
} crescent_hello_t;
typedef struct {
    uint8_t protocol_version;
    uint32_t device_capabilities;
    uint32_t session_id;
    uint32_t firmware_version;
    uint32_t serial_number;
    uint16_t watchdog_timeout_ms;
    uint16_t max_payload;
    uint8_t state;
    uint16_t resumed_plan_id;
    uint8_t resumed_exposures_done;
} crescent_hello_reply_t;
typedef struct {
    uint8_t acked_msg_id;
    int32_t detail;
} crescent_ack_t;
typedef struct {
    uint8_t acked_msg_id;
    uint16_t error_code;
    int32_t detail;
} crescent_nak_t;
typedef struct {
    uint32_t uptime_ms;
    uint8_t state;
} crescent_heartbeat_t;
/* GET_STATUS: empty payload (CRESCENT_LEN_GET_STATUS = 0), no struct. */
typedef struct {
    uint8_t state;
    uint16_t fault_code;
    uint8_t interlocks;
    uint8_t homed;
    int32_t arc_mdeg;
    uint16_t force_dn;
    uint32_t thickness_um;
    uint16_t anode_heat_permille;
    uint16_t armed_plan_id;
    uint8_t exposures_done;
    uint8_t detector_state;
    uint32_t exposure_counter;
} crescent_status_t;
/* GET_INFO: empty payload (CRESCENT_LEN_GET_INFO = 0), no struct. */
typedef struct {
    uint32_t sid_um;
    uint32_t pivot_height_um;
    uint32_t support_height_um;
    uint32_t native_pitch_nm;
    uint8_t binning;
    uint16_t rows;
    uint16_t cols;
    int32_t offset_x_um;
    int32_t offset_y_um;
    int32_t arc_min_mdeg;
    int32_t arc_max_mdeg;
    uint32_t arc_max_speed_mdeg_s;
    uint16_t force_limit_dn;
    uint16_t kv_min_ckv;
    uint16_t kv_max_ckv;
    uint32_t mas_max_nas;
    uint16_t dark_offset_adu;
    uint8_t data_channel_len;
    char data_channel[200];
} crescent_device_info_t;
/* GET_LIMITS: empty payload (CRESCENT_LEN_GET_LIMITS = 0), no struct. */
typedef struct {
    uint16_t ma_min_dma;
    uint16_t ma_max_dma;
    uint32_t power_max_w;
    uint32_t mas_min_nas;
    uint16_t exposure_max_ms;
    uint16_t backup_timer_ms;
    uint32_t anode_heat_capacity_j;
    uint32_t anode_cooling_w;
    uint32_t arc_acceleration_mdeg_s2;
    uint32_t arc_jerk_mdeg_s3;
    uint16_t detector_readout_ms;
    uint16_t detector_min_frame_interval_ms;
    uint16_t arc_settle_ms;
    uint32_t compression_thickness_min_um;
    uint32_t compression_thickness_max_um;
    uint16_t max_projections;
    uint8_t anode_filter_mask;
    uint16_t small_focus_um;
    uint16_t large_focus_um;
} crescent_limits_info_t;
/* HOME: empty payload (CRESCENT_LEN_HOME = 0), no struct. */
typedef struct {
    int32_t target_mdeg;
    uint32_t speed_mdeg_s;
} crescent_move_arc_t;
typedef struct {
    uint16_t target_force_dn;
    uint32_t min_thickness_um;
    uint32_t speed_um_s;
} crescent_compress_t;
/* RELEASE: empty payload (CRESCENT_LEN_RELEASE = 0), no struct. */
typedef struct {
    uint8_t anode_filter;
    uint16_t kv_ckv;
    uint16_t ma_dma;
    uint8_t focal_spot;
} crescent_set_technique_t;
typedef struct {
    int32_t angle_mdeg;
    uint16_t kv_ckv;
    uint32_t mas_nas;
    uint32_t pulse_us;
} crescent_arm_plan_entries_t;
typedef struct {
    uint16_t plan_id;
    uint8_t motion;
    uint8_t anode_filter;
    uint8_t focal_spot;
    uint32_t speed_mdeg_s;
    uint32_t digest;
    uint8_t final;
    uint8_t entries_len;
    crescent_arm_plan_entries_t entries[44];
} crescent_arm_plan_t;
typedef struct {
    uint16_t plan_id;
    uint32_t digest;
} crescent_fire_t;
typedef struct {
    uint8_t reason;
} crescent_abort_t;
typedef struct {
    uint16_t fault_code;
} crescent_reset_fault_t;
typedef struct {
    uint16_t period_ms;
} crescent_set_telemetry_t;
typedef struct {
    uint8_t input;
    uint8_t value;
} crescent_sim_set_input_t;
typedef struct {
    uint16_t fault_code;
    int32_t param;
} crescent_sim_inject_fault_t;
typedef struct {
    uint64_t device_time_us;
    int32_t arc_mdeg;
    int32_t arc_speed_mdeg_s;
    uint16_t force_dn;
    uint32_t thickness_um;
    uint16_t kv_ckv;
    uint16_t ma_dma;
    uint16_t anode_heat_permille;
    uint8_t state;
    uint8_t interlocks;
    uint8_t detector_state;
} crescent_telemetry_t;
typedef struct {
    uint64_t device_time_us;
    uint8_t old_state;
    uint8_t new_state;
    uint8_t cause_msg_id;
    uint16_t fault_code;
} crescent_state_changed_t;
typedef struct {
    uint16_t plan_id;
    uint8_t index;
    uint32_t frame_id;
    uint8_t status;
    int32_t planned_mdeg;
    int32_t start_mdeg;
    int32_t end_mdeg;
    uint16_t kv_ckv;
    uint32_t mas_nas;
    uint64_t window_start_us;
    uint64_t window_end_us;
} crescent_exposure_done_t;
typedef struct {
    uint32_t frame_id;
    uint16_t rows;
    uint16_t cols;
    uint8_t bits;
    uint32_t checksum;
    uint32_t size_bytes;
    uint8_t locator_len;
    char locator[200];
} crescent_image_ready_t;
typedef struct {
    uint64_t device_time_us;
    uint8_t interlocks;
    uint8_t changed;
} crescent_interlock_changed_t;
typedef struct {
    uint64_t device_time_us;
    uint16_t fault_code;
    uint8_t latched;
    int32_t detail;
    uint8_t text_len;
    char text[120];
} crescent_fault_t;
typedef struct {
    uint64_t device_time_us;
    uint8_t cause_msg_id;
    uint8_t ok;
    int32_t arc_mdeg;
    uint16_t force_dn;
    uint32_t thickness_um;
    uint16_t cause_seq;
} crescent_motion_done_t;
typedef struct {
    uint16_t plan_id;
    uint8_t index;
} crescent_get_exposure_log_t;
/* GET_DATA_TOKEN: empty payload (CRESCENT_LEN_GET_DATA_TOKEN = 0), no struct. */
typedef struct {
    uint32_t session_id;
    uint8_t nonce_len;
    char nonce[64];
} crescent_data_token_t;
typedef struct {
    uint16_t plan_id;
    uint8_t count;
    uint32_t exposure_counter;
    uint8_t index;
    uint8_t present;
    uint32_t frame_id;
    uint8_t status;
    int32_t planned_mdeg;
    int32_t start_mdeg;
    int32_t end_mdeg;
    uint16_t kv_ckv;
    uint32_t mas_nas;
    uint64_t window_start_us;
    uint64_t window_end_us;
    uint8_t image_state;
    uint16_t rows;
    uint16_t cols;
    uint32_t checksum;
    uint32_t size_bytes;
    uint8_t locator_len;
    char locator[200];
} crescent_exposure_log_t;
#pragma pack(pop)

#endif /* CRESCENT_WIRE_H */
