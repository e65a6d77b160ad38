/* Yipan operator console. Vanilla JS, no build step.
 *
 * Rules kept throughout this file:
 *  - data is rendered only with textContent / createElement (never innerHTML);
 *  - the token lives in sessionStorage only; ID numbers and names are never put
 *    in a URL, in storage or in the console;
 *  - every page sets document.body.dataset.ready = '<page>' once its data is shown
 *    ('' while loading), which the browser tests wait on.
 */
(function () {
  'use strict';

  // A host serves each of its localities' consoles under /t/<code>/console/;
  // that locality's API is then /t/<code>/v1/…. A node's is /console/ and /v1/….
  const BASE = location.pathname.replace(/\/console(\/.*)?$/, '');

  // ---------------------------------------------------------------- strings

  const I18N = {
    zh: {
      app_title: '流动人口计划生育信息共享 · 运营控制台',
      lang_switch: 'English',
      signout: '退出',
      signin_title: '登录',
      signin_hint: '请输入管理员发放的访问令牌。令牌只保存在本标签页中，关闭标签页即失效。',
      signin_label: '访问令牌 / access token',
      signin_submit: '登录',
      signin_empty: '请输入访问令牌',
      signin_invalid: '令牌无效或已过期',
      signin_failed: '无法验证令牌：{0}',
      nav_overview: '考核概览',
      nav_cases: '待办协同',
      nav_person: '人员查询',
      nav_record: '业务登记',
      nav_flows: '流动趋势',
      nav_health: '运行状态',
      no_pages: '此角色在控制台中没有可用的页面。',
      today: '业务日期 {0}',
      loading: '加载中…',
      none: '无记录',
      dash: '—',
      error_prefix: '出错：',
      network_error: '网络错误：{0}',
      forbidden: '无权限：{0}',
      export_csv: '导出CSV',
      export_xlsx: '导出Excel',
      export_failed: '导出失败：{0}',
      total: '共 {0} 条',
      refresh: '刷新',
      yes: '是',
      no: '否',
      local: '本地',
      local_suffix: '（本地）',
      colon: '：',
      list_sep: '，',
      n_items: '{0} 条',
      nav_label: '页面',
      div_unknown: '未知代码',
      div_looking: '查询中…',
      // overview
      ov_title: '考核概览',
      ov_month: '考核月份',
      ov_this_month_suffix: '（本月）',
      ov_back_current: '回到本月',
      ov_note_current: '统计月截至每月{0}日（各期起止日期见表头）；本月、本季度、本年度均统计至今日（北京时间）；每格下方小字为 分子/分母。',
      ov_note_earlier: '所选月份 {0}，及其所在季度 {1}、所在年度 {2}；每格下方小字为 分子/分母。',
      ov_cur_month: '本月',
      ov_cur_quarter: '本季度',
      ov_cur_year: '本年度',
      ov_sel_month: '月度',
      ov_sel_quarter: '季度',
      ov_sel_year: '年度',
      ov_export_hint: '导出 {0} 月度考核表',
      period_month: '{0}年{1}月',
      ov_own: '本地（{0}）综合考核',
      ov_dir_out: '本地对 {0} 的考核',
      ov_dir_in: '{0} 对本地的考核',
      ov_more: '显示其余 {0} 个对端（共 {1} 个）',
      ov_more_note: '按本月未达标项数排列，先显示前 {0} 个对端；全部对端的本月数据可导出。',
      ov_as_of: '截至 {0}',
      ov_trend: '近12个月趋势',
      ov_trend_table: '近12个月指标值',
      tr_scope: '范围',
      tr_scope_own: '本地综合',
      tr_scope_out: '本地对 {0}',
      tr_scope_in: '{0} 对本地',
      tr_indicator: '指标',
      tr_all_rates: '全部比率指标',
      tr_target: '目标 {0}',
      tr_no_data: '近12个月没有数据',
      col_indicator: '指标',
      col_target: '目标',
      col_fraction: '分子/分母',
      pass_yes: '达标',
      pass_no: '未达标',
      pass_na: '无数据',
      // cases
      cs_title: '待办协同（未办结）',
      cs_kind: '类型',
      cs_counterpart: '对方',
      cs_direction: '方向',
      cs_dir_all: '全部',
      cs_dir_to: '待我答复',
      cs_dir_from: '我方等待答复',
      cs_overdue_only: '只看逾期',
      cs_all: '全部',
      col_type: '类型',
      col_direction: '方向（发起→答复）',
      col_person: '人员编码',
      col_opened: '发起时间',
      col_due: '答复期限',
      col_wd: '工作日',
      col_state: '状态',
      col_action: '操作',
      urgent: '紧急',
      wd_left: '剩 {0} 个工作日',
      wd_over: '超期 {0} 个工作日',
      days_over: '超期 {0} 天',
      st_open: '办理中',
      st_overdue: '逾期 {0} 天',
      st_closed: '已办结',
      st_closed_late: '逾期办结',
      answer: '答复',
      answer_title: '答复：{0}',
      answer_submit: '提交答复',
      answer_cancel: '取消',
      answer_done: '已答复（{0}），序号 {1}。',
      answer_receive_hint: '确认已接收该通报。',
      ans_result: '协查结果',
      ans_remarks: '备注',
      ans_approved: '审核意见',
      ans_approve: '同意登记',
      ans_reject: '不同意',
      ans_cert_ref: '证明编号',
      ans_valid_until: '有效期至',
      ans_issue: '重新出具婚育证明（本地为户籍地）',
      ans_submit_cert: '提交婚育证明（本地为现居住地）',
      // person
      ps_title: '人员查询',
      ps_id_number: '身份证号',
      ps_or: '或',
      ps_key: '人员编码（32位）',
      ps_lookup: '查询',
      ps_need_input: '请输入身份证号或人员编码',
      ps_key_bad: '人员编码应为32位十六进制字符',
      ps_checkdigit_warn: '身份证号校验位不正确，已按原号码查询。',
      ps_person: '人员编码：{0}',
      ps_cards: '责任卡',
      ps_no_cards: '该人员没有责任卡记录',
      ps_card_title: '户籍地 {0} → 现居住地 {1}',
      ps_anchor: '起算时间 {0}',
      ps_catalogue: '职责目录 户籍地 {0} / 现居住地 {1}',
      col_item: '职责事项',
      col_side: '责任方',
      col_done_at: '完成时间',
      side_origin: '户籍地',
      side_residence: '现居住地',
      item_done: '已完成（按时）',
      item_done_late: '逾期完成',
      item_pending: '待办',
      item_overdue: '逾期 {0} 天',
      ps_timeline: '事件时间线',
      ps_reveal: '显示未遮蔽的个人信息',
      ps_no_events: '没有事件',
      col_when: '发生时间',
      col_recorded: '记录时间',
      col_author: '记录方',
      col_event: '事件',
      col_rel: '户籍地→现居住地',
      col_detail: '内容',
      answers_to: '答复 {0}',
      withheld: '未显示：{0}',
      dc_title: '个人信息披露记录',
      dc_note: '本表由本节点记录，含每次向外提供该人个人信息的时间、对象与依据；不含个人信息本身。',
      dc_limited: '仅显示最近 {0} 条（共 {1} 条）。',
      dc_unavailable: '本节点不提供披露记录（节点版本较旧）。',
      dc_failed: '无法加载披露记录：{0}',
      col_dc_channel: '方式',
      col_dc_recipient: '接收方',
      col_dc_role: '角色',
      col_dc_tiers: '信息类别',
      col_dc_masked: '遮蔽',
      col_dc_event: '事件',
      col_dc_basis: '依据',
      dc_masked: '遮蔽',
      dc_full: '完整',
      dc_rcpt_downstream: '下游：{0}',
      dc_rcpt_token: '接口调用方（令牌 {0}）',
      dc_rcpt_cert: '接口调用方（证书 {0}）',
      dc_rcpt_cli: '本机操作员 {0}',
      er_title: '删除个人信息',
      er_note: '删除后，本节点该人全部事件的所选信息类别即被清除，并通知曾接收这些信息的各地删除，对方以签名回执确认；流中的副本因密钥销毁而无法读取。事件本身、签名链与统计不变。',
      er_col_direction: '方向',
      er_col_author: '发起方',
      er_col_basis: '依据',
      er_col_reference: '案卷号',
      er_col_due: '回执期限',
      er_col_answers: '各接收方',
      er_sent: '本地发起',
      er_received: '对方发起',
      er_confirmed: '已确认',
      er_open: '待确认',
      er_overdue: '逾期 {0} 天',
      er_none: '无删除请求。',
      er_form_title: '执行删除（不可撤销）',
      er_form_tiers: '删除的信息类别',
      er_form_basis: '依据',
      er_form_reference: '案卷号（不得填写姓名或证件号）',
      er_form_submit: '删除该人的个人信息',
      er_confirm: '确定删除该人的所选个人信息？此操作不可撤销，并将通知各接收方删除。',
      er_need_tier: '请至少选择一个信息类别。',
      er_done: '已删除本地 {0} 项信息，已向 {1} 发出删除请求。',
      er_failed: '删除失败：{0}',
      // record
      rc_title: '业务登记',
      rc_kind: '事项',
      rc_side: '本地是',
      rc_side_res: '现居住地',
      rc_side_org: '户籍地',
      rc_submit: '提交',
      rc_reset: '清空',
      rc_done: '已记录：序号 {0}',
      rc_dup: '（此前已记录，未重复写入）',
      rc_recipients: '接收方：{0}',
      rc_no_recipients: '无接收方',
      rc_warnings: '提示：',
      w_id_check: '身份证号校验位不符（已接受，请再核对证件）',
      w_person_id_check: '用于查找人员的身份证号校验位不符（已接受；如有笔误将找不到该人员并建立新人员，请再核对证件）',
      rc_server_field: '服务器拒绝：',
      rc_conflict: '编号冲突：此表单的编号已用于内容不同的记录。已生成新编号，请核对后再提交。',
      rc_retry: '网络错误，可直接重试（同一编号不会重复记录）：{0}',
      rc_invalid: '请先更正标出的字段。',
      choose: '请选择',
      optional: '（选填）',
      hint_no_personal: '无个人信息权限的角色也能看到此栏内容，请勿填写姓名、身份证号、电话等个人信息。',
      f_origin: '户籍地代码',
      f_residence: '现居住地代码',
      f_occurred_at: '发生时间（北京时间）',
      f_person_id_number: '身份证号',
      f_identity_name: '姓名',
      f_identity_idNumber: '身份证号',
      f_contact_phone: '手机号',
      f_body_channel: '登记渠道',
      f_body_township: '乡镇（街道）代码',
      f_body_expectedStayMonths: '预计居住月数',
      f_body_certificateRef: '婚育证明编号',
      f_body_reason: '不符原因',
      f_body_service: '服务项目',
      f_body_providerRef: '服务机构',
      f_body_agreement: '协议类型',
      f_body_agreementRef: '协议编号',
      f_body_topic: '通报主题',
      f_body_urgency: '紧急程度',
      f_body_subject: '协查事项',
      f_body_destination: '去向地代码',
      f_body_community: '村（社区）代码',
      f_body_sex: '性别',
      f_body_birthYear: '出生年份（仅女性）',
      f_body_maritalStatus: '婚姻状况（仅女性）',
      f_body_activity: '活动形式',
      f_body_venue: '场所',
      f_body_attendance: '参加人数',
      f_body_materials: '发放宣传品数',
      f_body_pointRef: '发放点编号',
      f_body_mode: '发放方式',
      f_body_active: '发放点状态',
      f_body_unitsDistributed: '本期发放药具数',
      f_body_surveyRef: '调查批次',
      f_body_respondents: '参加评议人数',
      f_body_satisfied: '满意人数',
      rc_locality_event: '本地工作记录，不涉及个人，不发送给其他地区。',
      v_community: '应为12位村（社区）代码，前9位为本县乡镇',
      v_year: '应为4位年份',
      v_required: '必填',
      v_code6: '应为6位行政区划代码',
      v_township: '应为9位乡镇代码且属于本县',
      v_id: '身份证号校验位不正确',
      v_id_shape: '身份证号应为18位（17位数字加校验位）',
      v_phone: '手机号应为以1开头的11位数字',
      v_future: '发生时间不能晚于现在',
      v_too_old: '发生时间不能早于2000-01-01',
      v_time: '请填写有效的时间',
      v_int: '应为非负整数',
      v_same: '不能与本地代码相同',
      // flows
      fl_title: '流动趋势与预警',
      fl_table: '按月明细',
      fl_arrivals: '流入登记',
      fl_departures: '流出登记',
      fl_warning: '预警',
      fl_warnings: '预警',
      fl_no_warnings: '无预警',
      fl_rule: '预警规则：{0}',
      fl_rule_known: '当月流入登记数与前3个月均值比较：当 max(当月数, 均值) ≥ 10 且 |当月数 − 均值| > max(0.5 × 均值, 3 × √均值) 时预警',
      fl_warn_item: '{0}　现居住地 {1} ← 户籍地 {2}：当月 {3}，前三月均值 {4}{5}',
      fl_all_origins: '全部',
      fl_surge: '（激增）',
      fl_drop: '（骤降）',
      col_period: '月份',
      col_residence: '现居住地',
      col_origin: '户籍地',
      col_arrivals: '流入',
      col_departures: '流出',
      // health
      hl_title: '运行状态',
      hl_node: '本节点',
      hl_locality: '地区',
      hl_head: '本地链头',
      hl_events: '存储事件数',
      hl_outbox: '待发送',
      hl_nats: '消息总线',
      hl_lag_p50: '复制延迟 p50',
      hl_lag_p99: '复制延迟 p99',
      hl_lag_samples: '{0} 个样本',
      hl_lag_none: '尚无样本',
      hl_lag_absent: '本节点未报告',
      hl_lag_title: '事件从作者写入到本节点存储的复制延迟（本节点启动以来）',
      unit_ms: '{0} 毫秒',
      unit_s: '{0} 秒',
      unit_min: '{0} 分钟',
      hl_connected: '已连接',
      hl_disconnected: '未连接',
      hl_channels: '与对端的同步',
      col_counterpart: '对端',
      col_sent: '已发送',
      col_acked: '对方已确认',
      col_received: '已接收',
      hl_quarantine: '隔离区（被拒收的事件）',
      hl_q_summary: '在隔离区 {0} 条，已清除 {1} 条',
      col_time: '时间',
      col_code: '代码',
      col_reason: '原因',
      hl_audit: '一致性审计',
      hl_audit_run: '立即审计',
      hl_audit_last: '上次审计：{0}，审计事件 {1} 条，隔离 {2} 条',
      hl_audit_never: '尚未审计',
      hl_audit_running: '审计进行中…',
      hl_audit_ok: '通过',
      hl_audit_faults: '{0} 个问题',
      dr_title: '本月个人信息披露汇总',
      dr_title_range: '个人信息披露汇总',
      dr_from: '起始日期',
      dr_to: '截止日期',
      dr_range: '{0} 至 {1}（北京时间，含首尾两日）',
      dr_bad_range: '起始日期不能晚于截止日期',
      dr_total: '合计',
      col_dr_releases: '披露次数',
      col_dr_persons: '涉及人数',
      col_dr_masked: '其中遮蔽',
      roles: {
        clerk: '办事员', supervisor: '主管', auditor: '审计员', statistics: '统计',
        health: '卫健', public_security: '公安', monitor: '监控', admin: '管理员',
      },
      exchange: {
        notification: '通报→接收', case_assist: '协查→反馈',
        first_child: '一孩登记→确认', certificate_mismatch: '证明不符→重新出具',
      },
      events: {
        ArrivalRegistered: '流入登记', DepartureRegistered: '流出登记', ResidencePermitIssued: '办理居住证',
        HousingRegistered: '房屋登记', EmployerRegistered: '用工单位登记', CertificateIssued: '出具婚育证明',
        CertificateSubmitted: '提交婚育证明', CertificateVerified: '查验婚育证明',
        CertificateMismatchFound: '证明不符', AgreementSigned: '签订协议',
        ContraceptionStatusRecorded: '记录避孕节育情况', ServiceRendered: '提供服务',
        BenefitGranted: '落实奖励优惠', NotificationSent: '信息通报', NotificationReceived: '接收通报',
        CaseAssistRequested: '发起协查', CaseAssistAnswered: '协查反馈',
        FirstChildRegistrationRequested: '一孩登记申请', FirstChildRegistrationConfirmed: '一孩登记确认',
        ComplaintFiled: '投诉', ComplaintResolved: '投诉办结', StaffRosterUpdated: '人员配备更新',
        EventCorrected: '更正', EventRetracted: '撤销', DutyCatalogPublished: '发布职责目录',
        KeyRotated: '密钥轮换', ErasureRequested: '删除个人信息', ErasureConfirmed: '删除回执',
        OutreachActivityHeld: '宣传活动/讲座', DistributionPointReported: '药具发放点', SatisfactionSurveyed: '满意度调查',
      },
      record_kinds: {
        ArrivalRegistered: '流入登记', CertificateVerified: '查验婚育证明',
        CertificateMismatchFound: '证明不符', ServiceRendered: '免费技术服务',
        AgreementSigned: '签订协议/承诺', NotificationSent: '信息通报',
        CaseAssistRequested: '发起协查', DepartureRegistered: '流出登记',
        OutreachActivityHeld: '宣传活动/讲座（本地）', DistributionPointReported: '药具发放点报告（本地）',
        SatisfactionSurveyed: '评计生满意度调查（本地）',
      },
      enums: {
        REGISTRATION_CHANNEL_SERVICE_DESK: '服务窗口', REGISTRATION_CHANNEL_RENTAL_HOUSING: '出租房屋',
        REGISTRATION_CHANNEL_EMPLOYER: '用工单位', REGISTRATION_CHANNEL_JOB_MARKET: '劳务市场',
        REGISTRATION_CHANNEL_RESIDENCE_PERMIT: '居住证', REGISTRATION_CHANNEL_ORIGIN_NOTICE: '户籍地通报',
        MISMATCH_REASON_EXPIRED: '证明过期', MISMATCH_REASON_FACTS_DIFFER: '内容与事实不符',
        MISMATCH_REASON_NOT_ISSUED_BY_ORIGIN: '非户籍地出具', MISMATCH_REASON_OTHER: '其他',
        SERVICE_KIND_CONTRACEPTIVES: '避孕药具', SERVICE_KIND_PRE_PREGNANCY_CHECK: '孕前优生检查',
        SERVICE_KIND_PREGNANCY_CHECK: '孕期检查', SERVICE_KIND_REPRODUCTIVE_HEALTH_CHECK: '生殖健康检查',
        SERVICE_KIND_ULTRASOUND_REGISTRATION: '孕情B超登记', SERVICE_KIND_SURGERY_REGISTRATION: '手术登记',
        SERVICE_KIND_CARE_VISIT: '随访', SERVICE_KIND_PERSON_INFORMED: '告知宣传',
        AGREEMENT_KIND_PLEDGE: '承诺书', AGREEMENT_KIND_SERVICE_AGREEMENT: '服务协议',
        NOTIFICATION_TOPIC_REGISTRATION: '登记', NOTIFICATION_TOPIC_SERVICES: '服务',
        NOTIFICATION_TOPIC_CONTRACEPTION: '避孕节育', NOTIFICATION_TOPIC_CONTACT_CHANNEL: '联系方式',
        NOTIFICATION_TOPIC_CERTIFICATE: '婚育证明', NOTIFICATION_TOPIC_OTHER: '其他',
        URGENCY_NORMAL: '普通', URGENCY_URGENT: '紧急',
        VERIFICATION_RESULT_CONFIRMED: '情况属实', VERIFICATION_RESULT_NOT_CONFIRMED: '情况不属实',
        VERIFICATION_RESULT_PERSON_UNKNOWN: '查无此人', VERIFICATION_RESULT_INCONCLUSIVE: '无法核实',
        BENEFIT_KIND_LEAVE: '假期', BENEFIT_KIND_REWARD: '奖励',
        NOTIFICATION_TOPIC_FIRST_CHILD: '一孩登记结果',
        SEX_FEMALE: '女', SEX_MALE: '男',
        MARITAL_STATUS_MARRIED: '已婚', MARITAL_STATUS_NOT_MARRIED: '未婚/离婚/丧偶',
        OUTREACH_KIND_LECTURE: '婚育知识讲座', OUTREACH_KIND_CAMPAIGN: '宣传活动', OUTREACH_KIND_MATERIALS: '发放宣传品',
        OUTREACH_KIND_POSTERS: '标语/宣传专栏', OUTREACH_KIND_CONSULTATION: '咨询服务',
        VENUE_CONSTRUCTION_SITE: '建筑工地', VENUE_MARKET: '集贸市场', VENUE_STATION: '车站', VENUE_TOURIST_AREA: '旅游区',
        VENUE_COMMUNITY: '社区', VENUE_ENTERPRISE: '企业', VENUE_SERVICE_HALL: '服务大厅', VENUE_OTHER: '其他',
        DISTRIBUTION_MODE_STAFFED: '定点发放', DISTRIBUTION_MODE_SELF_SERVICE: '自助发放', DISTRIBUTION_MODE_DELEGATED: '委托发放',
        DISTRIBUTION_MODE_DELIVERY: '送药上门', DISTRIBUTION_MODE_CARD_OR_ONLINE: '卡网结合',
        active_true: '开放', active_false: '已撤销',
      },
      fields: {
        channel: '登记渠道', township: '乡镇', expectedStayMonths: '预计居住月数', destination: '去向',
        permitRef: '居住证编号', validUntil: '有效期至', housingRef: '房屋编号', employerRef: '用工单位',
        certificateRef: '证明编号', reason: '原因', agreement: '协议类型', agreementRef: '协议编号',
        service: '服务项目', providerRef: '服务机构', benefit: '奖励类型', amountFen: '金额（分）', days: '天数',
        topic: '主题', urgency: '紧急程度', subject: '协查事项', result: '结果', remarks: '备注',
        approved: '同意', category: '类别', outcome: '结果', serviceWorkers: '服务人员数',
        version: '版本', replacement: '更正为', aboutEvents: '关联事件',
        community: '村（社区）', birthYear: '出生年份', maritalStatus: '婚姻状况', workplace: '经营地',
        activity: '活动形式', venue: '场所', attendance: '参加人数', materials: '宣传品数', pointRef: '发放点',
        mode: '发放方式', active: '开放', unitsDistributed: '发放药具数', surveyRef: '调查批次',
        respondents: '评议人数', satisfied: '满意人数', units: '村（社区）人员',
        name: '姓名', idNumber: '身份证号', birthDate: '出生日期', sex: '性别', married: '已婚',
        phone: '电话', address: '地址', pregnant: '怀孕', expectedDelivery: '预产期',
        contraceptionMethod: '避孕方式', children: '子女数', notes: '备注',
        'contact.channel': '联系渠道', kind: '事项', body: '内容', sha256: '摘要', document: '文件', certificate: '证书',
      },
      tiers: { identity: '身份信息', contact: '联系信息', health: '健康信息' },
      dc_channels: { replication: '复制到对端', downstream: '下游系统', http: '接口查询', stream: '事件流', cli: '本机命令行' },
      er_bases: { ERASURE_BASIS_PERSON_REQUEST: '本人申请', ERASURE_BASIS_RETENTION_EXPIRED: '保存期限届满', ERASURE_BASIS_PURPOSE_FULFILLED: '处理目的已实现', ERASURE_BASIS_CONSENT_WITHDRAWN: '撤回同意', ERASURE_BASIS_UNLAWFUL_PROCESSING: '违法处理' },
      dc_tiers: { identity: '身份', contact: '联系方式', health: '健康' },
      // data-quality flags
      q_summary: '数据质量提示：{0} 条（{1}）',
      q_part: '{0} {1}',
      q_open: '查看明细',
      q_close: '收起明细',
      q_failed: '无法加载数据质量提示：{0}',
      q_none: '没有数据质量提示',
      q_open_person: '打开人员 {0}',
      q_card_title: '数据质量提示（{0} 条）：以下事件不宜按字面理解',
      q_badge: '存疑',
      col_q_code: '问题',
      col_q_message: '说明',
      q_codes: { 'time.defaulted': '未填写发生时间', 'answer.orphan': '答复无对应请求', 'time.before_arrival': '早于流入登记', 'arrival.missing': '未做流入登记' },
      q_codes_long: {
        'time.defaulted': '未填写发生时间，以录入时间代替',
        'answer.orphan': '所答复的请求在本节点不存在',
        'time.before_arrival': '发生日期早于流入登记日期',
        'arrival.missing': '现居住地未做流入登记即记录了此项工作',
      },
    },
    en: {
      app_title: 'Migrant family-planning data sharing · Operator console',
      lang_switch: '中文',
      signout: 'Sign out',
      signin_title: 'Sign in',
      signin_hint: 'Enter the access token you were given. It is kept in this tab only and is gone when the tab closes.',
      signin_label: 'Access token',
      signin_submit: 'Sign in',
      signin_empty: 'Enter an access token',
      signin_invalid: 'Invalid or expired token',
      signin_failed: 'Cannot check the token: {0}',
      nav_overview: 'Overview',
      nav_cases: 'Case queue',
      nav_person: 'Person',
      nav_record: 'Record',
      nav_flows: 'Flows',
      nav_health: 'Health',
      no_pages: 'This role has no page in the console.',
      today: 'Business date {0}',
      loading: 'Loading…',
      none: 'Nothing',
      dash: '—',
      error_prefix: 'Error: ',
      network_error: 'Network error: {0}',
      forbidden: 'Not allowed: {0}',
      export_csv: 'Export CSV',
      export_xlsx: 'Export Excel',
      export_failed: 'Export failed: {0}',
      total: '{0} in total',
      refresh: 'Refresh',
      yes: 'yes',
      no: 'no',
      local: 'this locality',
      local_suffix: ' (this locality)',
      colon: ': ',
      list_sep: ', ',
      n_items: '{0} item(s)',
      nav_label: 'Pages',
      div_unknown: 'unknown code',
      div_looking: 'looking up…',
      ov_title: 'Scorecard overview',
      ov_month: 'Month',
      ov_this_month_suffix: ' (this month)',
      ov_back_current: 'Back to this month',
      ov_note_current: 'Statistics months close on day {0} (each period\'s days are under its head); month, quarter and year to date (China time); the small figures under each value are numerator / denominator.',
      ov_note_earlier: 'Month {0}, its quarter {1} and its year {2}; the small figures under each value are numerator / denominator.',
      ov_cur_month: 'This month',
      ov_cur_quarter: 'This quarter',
      ov_cur_year: 'This year',
      ov_sel_month: 'Month',
      ov_sel_quarter: 'Quarter',
      ov_sel_year: 'Year',
      ov_export_hint: 'Exports the scorecard of {0}',
      period_month: '{0}-{1}',
      ov_own: 'This locality ({0}), all relationships',
      ov_dir_out: 'This locality toward {0}',
      ov_dir_in: '{0} toward this locality',
      ov_more: 'Show the other {0} counterparts ({1} in all)',
      ov_more_note: 'Ranked by indicators missed this month; the first {0} counterparts are shown. Every counterpart\'s month exports below.',
      ov_as_of: 'as of {0}',
      ov_trend: 'Last 12 months',
      ov_trend_table: 'Indicator values, last 12 months',
      tr_scope: 'Scope',
      tr_scope_own: 'This locality, all',
      tr_scope_out: 'This locality toward {0}',
      tr_scope_in: '{0} toward this locality',
      tr_indicator: 'Indicator',
      tr_all_rates: 'All rates',
      tr_target: 'target {0}',
      tr_no_data: 'No data in the last 12 months',
      col_indicator: 'Indicator',
      col_target: 'Target',
      col_fraction: 'Numerator/denominator',
      pass_yes: 'pass',
      pass_no: 'fail',
      pass_na: 'no data',
      cs_title: 'Open exchanges',
      cs_kind: 'Type',
      cs_counterpart: 'Counterpart',
      cs_direction: 'Direction',
      cs_dir_all: 'All',
      cs_dir_to: 'I must answer',
      cs_dir_from: 'I am waiting',
      cs_overdue_only: 'Overdue only',
      cs_all: 'All',
      col_type: 'Type',
      col_direction: 'From → to',
      col_person: 'Person key',
      col_opened: 'Opened',
      col_due: 'Due',
      col_wd: 'Working days',
      col_state: 'State',
      col_action: 'Action',
      urgent: 'urgent',
      wd_left: '{0} working days left',
      wd_over: '{0} working days overdue',
      days_over: '{0} days overdue',
      st_open: 'open',
      st_overdue: 'overdue {0} days',
      st_closed: 'closed',
      st_closed_late: 'closed late',
      answer: 'Answer',
      answer_title: 'Answer: {0}',
      answer_submit: 'Send answer',
      answer_cancel: 'Cancel',
      answer_done: 'Answered ({0}), seq {1}.',
      answer_receive_hint: 'Confirm that the notification was received.',
      ans_result: 'Result',
      ans_remarks: 'Remarks',
      ans_approved: 'Decision',
      ans_approve: 'approve',
      ans_reject: 'reject',
      ans_cert_ref: 'Certificate reference',
      ans_valid_until: 'Valid until',
      ans_issue: 'Issue a new certificate (this locality is the origin)',
      ans_submit_cert: 'Submit the certificate (this locality is the residence)',
      ps_title: 'Person',
      ps_id_number: 'Resident ID number',
      ps_or: 'or',
      ps_key: 'Person key (32 hex)',
      ps_lookup: 'Look up',
      ps_need_input: 'Enter an ID number or a person key',
      ps_key_bad: 'A person key is 32 hex digits',
      ps_checkdigit_warn: 'The ID number\u2019s check digit is wrong; looked up as given.',
      ps_person: 'Person key: {0}',
      ps_cards: 'Responsibility cards',
      ps_no_cards: 'No card for this person',
      ps_card_title: 'Origin {0} → residence {1}',
      ps_anchor: 'anchor {0}',
      ps_catalogue: 'catalogue origin {0} / residence {1}',
      col_item: 'Duty',
      col_side: 'Side',
      col_done_at: 'Done at',
      side_origin: 'origin',
      side_residence: 'residence',
      item_done: 'done on time',
      item_done_late: 'done late',
      item_pending: 'pending',
      item_overdue: 'overdue {0} days',
      ps_timeline: 'Timeline',
      ps_reveal: 'Show personal data unmasked',
      ps_no_events: 'No events',
      col_when: 'Occurred',
      col_recorded: 'Recorded',
      col_author: 'Author',
      col_event: 'Event',
      col_rel: 'Origin → residence',
      col_detail: 'Detail',
      answers_to: 'answers {0}',
      withheld: 'withheld: {0}',
      dc_title: 'Who received this person\u2019s data',
      dc_note: 'Recorded by this node: every time it gave out this person\u2019s personal data \u2014 when, to whom and on what basis. The personal data itself is not in this table.',
      dc_limited: 'The latest {0} of {1} are shown.',
      dc_unavailable: 'This node does not offer the disclosure log (an older version).',
      dc_failed: 'Cannot load the disclosure log: {0}',
      col_dc_channel: 'Channel',
      col_dc_recipient: 'Recipient',
      col_dc_role: 'Role',
      col_dc_tiers: 'Tiers',
      col_dc_masked: 'Masked',
      col_dc_event: 'Event',
      col_dc_basis: 'Basis',
      dc_masked: 'masked',
      dc_full: 'in full',
      dc_rcpt_downstream: 'downstream: {0}',
      dc_rcpt_token: 'API caller (token {0})',
      dc_rcpt_cert: 'API caller (certificate {0})',
      dc_rcpt_cli: 'operator on this machine ({0})',
      er_title: 'Erasure of personal data',
      er_note: 'Erasing clears the chosen tiers from every event of this person held here, and asks every locality that received them to do the same; each confirms with a signed receipt. Copies in the streams become unreadable (their keys are destroyed). The events, signature chains and statistics are unchanged.',
      er_col_direction: 'Direction',
      er_col_author: 'Requested by',
      er_col_basis: 'Basis',
      er_col_reference: 'Case no.',
      er_col_due: 'Answer by',
      er_col_answers: 'Recipients',
      er_sent: 'sent',
      er_received: 'received',
      er_confirmed: 'confirmed',
      er_open: 'open',
      er_overdue: 'overdue {0} d',
      er_none: 'No erasure requests.',
      er_form_title: 'Erase (cannot be undone)',
      er_form_tiers: 'Tiers to erase',
      er_form_basis: 'Basis',
      er_form_reference: 'Case no. (never a name or ID number)',
      er_form_submit: 'Erase this person\u2019s personal data',
      er_confirm: 'Erase the chosen personal data of this person? This cannot be undone; every recipient is asked to erase it too.',
      er_need_tier: 'Choose at least one tier.',
      er_done: '{0} payloads erased here; erasure requested from {1}.',
      er_failed: 'Erasure failed: {0}',
      rc_title: 'Record an event',
      rc_kind: 'Event',
      rc_side: 'This locality is the',
      rc_side_res: 'residence',
      rc_side_org: 'origin',
      rc_submit: 'Submit',
      rc_reset: 'Clear',
      rc_done: 'Recorded: seq {0}',
      rc_dup: ' (already recorded before, not written twice)',
      rc_recipients: 'Recipients: {0}',
      rc_no_recipients: 'no recipients',
      rc_warnings: 'Warnings:',
      w_id_check: 'the ID number\u2019s check digit does not match (accepted; please re-check the document)',
      w_person_id_check: 'the check digit of the ID number used to find the person does not match (accepted; a typo finds no one and starts a new person: please re-check the document)',
      rc_server_field: 'Refused by the server: ',
      rc_conflict: 'Id conflict: this form\u2019s id was used for different content. A new id was generated; check and submit again.',
      rc_retry: 'Network error; you can retry (the same id is never recorded twice): {0}',
      rc_invalid: 'Correct the marked fields first.',
      choose: 'Choose',
      optional: ' (optional)',
      hint_no_personal: 'Roles without access to personal data see this text too: do not enter names, ID numbers or phone numbers.',
      f_origin: 'Origin code',
      f_residence: 'Residence code',
      f_occurred_at: 'Occurred at (China time)',
      f_person_id_number: 'Resident ID number',
      f_identity_name: 'Name',
      f_identity_idNumber: 'Resident ID number',
      f_contact_phone: 'Mobile phone',
      f_body_channel: 'Registration channel',
      f_body_township: 'Township code',
      f_body_expectedStayMonths: 'Expected stay (months)',
      f_body_certificateRef: 'Certificate reference',
      f_body_reason: 'Reason',
      f_body_service: 'Service',
      f_body_providerRef: 'Provider',
      f_body_agreement: 'Agreement',
      f_body_agreementRef: 'Agreement reference',
      f_body_topic: 'Topic',
      f_body_urgency: 'Urgency',
      f_body_subject: 'Subject',
      f_body_destination: 'Destination code',
      f_body_community: 'Village / community code',
      f_body_sex: 'Sex',
      f_body_birthYear: 'Year of birth (women only)',
      f_body_maritalStatus: 'Marital status (women only)',
      f_body_activity: 'Activity',
      f_body_venue: 'Venue',
      f_body_attendance: 'People reached',
      f_body_materials: 'Items handed out',
      f_body_pointRef: 'Point id',
      f_body_mode: 'Mode',
      f_body_active: 'Point state',
      f_body_unitsDistributed: 'Units handed out since the last report',
      f_body_surveyRef: 'Survey round',
      f_body_respondents: 'Respondents',
      f_body_satisfied: 'Satisfied',
      rc_locality_event: 'A record of this locality\'s own work: about no person, sent to no other locality.',
      v_community: 'a 12-digit village/community code in a township of this county',
      v_year: 'a 4-digit year',
      v_required: 'required',
      v_code6: 'a 6-digit division code',
      v_township: 'a 9-digit township code of this county',
      v_id: 'wrong check digit',
      v_id_shape: '17 digits and a check digit',
      v_phone: '11 digits starting with 1',
      v_future: 'must not be in the future',
      v_too_old: 'must not be before 2000-01-01',
      v_time: 'enter a valid time',
      v_int: 'a whole number',
      v_same: 'must differ from this locality',
      fl_title: 'Flows and early warnings',
      fl_table: 'By month',
      fl_arrivals: 'Arrivals',
      fl_departures: 'Departures',
      fl_warning: 'Warning',
      fl_warnings: 'Warnings',
      fl_no_warnings: 'No warnings',
      fl_rule: 'Rule: {0}',
      fl_rule_known: 'arrivals this month vs the mean of the 3 months before: a warning when max(this month, mean) \u2265 10 and |this month \u2212 mean| > max(0.5 \u00d7 mean, 3 \u00d7 \u221amean)',
      fl_warn_item: '{0}  residence {1} ← origin {2}: {3} this month, mean of 3 months before {4}{5}',
      fl_all_origins: 'all',
      fl_surge: ' (surge)',
      fl_drop: ' (drop)',
      col_period: 'Month',
      col_residence: 'Residence',
      col_origin: 'Origin',
      col_arrivals: 'Arrivals',
      col_departures: 'Departures',
      hl_title: 'Node health',
      hl_node: 'This node',
      hl_locality: 'Locality',
      hl_head: 'Own head',
      hl_events: 'Events held',
      hl_outbox: 'Outbox pending',
      hl_nats: 'NATS',
      hl_lag_p50: 'Replication lag p50',
      hl_lag_p99: 'Replication lag p99',
      hl_lag_samples: '{0} samples',
      hl_lag_none: 'no samples yet',
      hl_lag_absent: 'not reported by this node',
      hl_lag_title: 'Replication lag from the author\u2019s append to storage here, since this node started',
      unit_ms: '{0} ms',
      unit_s: '{0} s',
      unit_min: '{0} min',
      hl_connected: 'connected',
      hl_disconnected: 'disconnected',
      hl_channels: 'Channels',
      col_counterpart: 'Counterpart',
      col_sent: 'Sent head',
      col_acked: 'Acknowledged',
      col_received: 'Received head',
      hl_quarantine: 'Quarantine (refused received events)',
      hl_q_summary: '{0} held, {1} evicted',
      col_time: 'Time',
      col_code: 'Code',
      col_reason: 'Reason',
      hl_audit: 'Audit',
      hl_audit_run: 'Run audit now',
      hl_audit_last: 'Last audit: {0}, {1} events, {2} quarantined',
      hl_audit_never: 'never audited',
      hl_audit_running: 'audit running…',
      hl_audit_ok: 'passed',
      hl_audit_faults: '{0} problems',
      dr_title: 'Disclosures this month',
      dr_title_range: 'Disclosures',
      dr_from: 'From',
      dr_to: 'To',
      dr_range: '{0} to {1} (China time, both days included)',
      dr_bad_range: 'The start date is after the end date',
      dr_total: 'Total',
      col_dr_releases: 'Releases',
      col_dr_persons: 'Distinct persons',
      col_dr_masked: 'Masked',
      roles: {
        clerk: 'clerk', supervisor: 'supervisor', auditor: 'auditor', statistics: 'statistics',
        health: 'health', public_security: 'public security', monitor: 'monitor', admin: 'admin',
      },
      exchange: {
        notification: 'notification → receipt', case_assist: 'case assist → answer',
        first_child: 'first child → confirmation', certificate_mismatch: 'certificate mismatch → reissue',
      },
      events: {
        ArrivalRegistered: 'arrival registered', DepartureRegistered: 'departure registered',
        ResidencePermitIssued: 'residence permit issued', HousingRegistered: 'housing registered',
        EmployerRegistered: 'employer registered', CertificateIssued: 'certificate issued',
        CertificateSubmitted: 'certificate submitted', CertificateVerified: 'certificate verified',
        CertificateMismatchFound: 'certificate mismatch found', AgreementSigned: 'agreement signed',
        ContraceptionStatusRecorded: 'contraception status recorded', ServiceRendered: 'service rendered',
        BenefitGranted: 'benefit granted', NotificationSent: 'notification sent',
        NotificationReceived: 'notification received', CaseAssistRequested: 'case assist requested',
        CaseAssistAnswered: 'case assist answered',
        FirstChildRegistrationRequested: 'first-child registration requested',
        FirstChildRegistrationConfirmed: 'first-child registration confirmed',
        ComplaintFiled: 'complaint filed', ComplaintResolved: 'complaint resolved',
        StaffRosterUpdated: 'staff roster updated', EventCorrected: 'correction', EventRetracted: 'retraction',
        DutyCatalogPublished: 'duty catalogue published', KeyRotated: 'key rotated',
        ErasureRequested: 'erasure requested', ErasureConfirmed: 'erasure confirmed',
        OutreachActivityHeld: 'outreach activity', DistributionPointReported: 'distribution point report',
        SatisfactionSurveyed: 'satisfaction survey',
      },
      record_kinds: {
        ArrivalRegistered: 'Arrival registration', CertificateVerified: 'Certificate verified',
        CertificateMismatchFound: 'Certificate mismatch', ServiceRendered: 'Free technical service',
        AgreementSigned: 'Agreement / pledge signed', NotificationSent: 'Notification',
        CaseAssistRequested: 'Case-assist request', DepartureRegistered: 'Departure registration',
        OutreachActivityHeld: 'Outreach activity (locality)', DistributionPointReported: 'Distribution point report (locality)',
        SatisfactionSurveyed: 'Satisfaction survey (locality)',
      },
      enums: {
        REGISTRATION_CHANNEL_SERVICE_DESK: 'service desk', REGISTRATION_CHANNEL_RENTAL_HOUSING: 'rental housing',
        REGISTRATION_CHANNEL_EMPLOYER: 'employer', REGISTRATION_CHANNEL_JOB_MARKET: 'job market',
        REGISTRATION_CHANNEL_RESIDENCE_PERMIT: 'residence permit', REGISTRATION_CHANNEL_ORIGIN_NOTICE: 'origin notice',
        MISMATCH_REASON_EXPIRED: 'expired', MISMATCH_REASON_FACTS_DIFFER: 'facts differ',
        MISMATCH_REASON_NOT_ISSUED_BY_ORIGIN: 'not issued by the origin', MISMATCH_REASON_OTHER: 'other',
        SERVICE_KIND_CONTRACEPTIVES: 'contraceptives', SERVICE_KIND_PRE_PREGNANCY_CHECK: 'pre-pregnancy check',
        SERVICE_KIND_PREGNANCY_CHECK: 'pregnancy check', SERVICE_KIND_REPRODUCTIVE_HEALTH_CHECK: 'reproductive health check',
        SERVICE_KIND_ULTRASOUND_REGISTRATION: 'ultrasound registration', SERVICE_KIND_SURGERY_REGISTRATION: 'surgery registration',
        SERVICE_KIND_CARE_VISIT: 'care visit', SERVICE_KIND_PERSON_INFORMED: 'person informed',
        AGREEMENT_KIND_PLEDGE: 'pledge', AGREEMENT_KIND_SERVICE_AGREEMENT: 'service agreement',
        NOTIFICATION_TOPIC_REGISTRATION: 'registration', NOTIFICATION_TOPIC_SERVICES: 'services',
        NOTIFICATION_TOPIC_CONTRACEPTION: 'contraception', NOTIFICATION_TOPIC_CONTACT_CHANNEL: 'contact channel',
        NOTIFICATION_TOPIC_CERTIFICATE: 'certificate', NOTIFICATION_TOPIC_OTHER: 'other',
        URGENCY_NORMAL: 'normal', URGENCY_URGENT: 'urgent',
        VERIFICATION_RESULT_CONFIRMED: 'confirmed', VERIFICATION_RESULT_NOT_CONFIRMED: 'not confirmed',
        VERIFICATION_RESULT_PERSON_UNKNOWN: 'person unknown', VERIFICATION_RESULT_INCONCLUSIVE: 'inconclusive',
        BENEFIT_KIND_LEAVE: 'leave', BENEFIT_KIND_REWARD: 'reward',
        NOTIFICATION_TOPIC_FIRST_CHILD: 'first-child registration',
        SEX_FEMALE: 'female', SEX_MALE: 'male',
        MARITAL_STATUS_MARRIED: 'married', MARITAL_STATUS_NOT_MARRIED: 'not married',
        OUTREACH_KIND_LECTURE: 'lecture', OUTREACH_KIND_CAMPAIGN: 'campaign', OUTREACH_KIND_MATERIALS: 'materials handed out',
        OUTREACH_KIND_POSTERS: 'posters / boards', OUTREACH_KIND_CONSULTATION: 'consultation desk',
        VENUE_CONSTRUCTION_SITE: 'construction site', VENUE_MARKET: 'market', VENUE_STATION: 'station',
        VENUE_TOURIST_AREA: 'tourist area', VENUE_COMMUNITY: 'community', VENUE_ENTERPRISE: 'enterprise',
        VENUE_SERVICE_HALL: 'service hall', VENUE_OTHER: 'other',
        DISTRIBUTION_MODE_STAFFED: 'staffed point', DISTRIBUTION_MODE_SELF_SERVICE: 'self-service',
        DISTRIBUTION_MODE_DELEGATED: 'delegated', DISTRIBUTION_MODE_DELIVERY: 'delivery',
        DISTRIBUTION_MODE_CARD_OR_ONLINE: 'card / online',
        active_true: 'open', active_false: 'closed',
      },
      fields: {
        channel: 'channel', township: 'township', expectedStayMonths: 'expected stay (months)', destination: 'destination',
        permitRef: 'permit ref.', validUntil: 'valid until', housingRef: 'housing ref.', employerRef: 'employer',
        certificateRef: 'certificate ref.', reason: 'reason', agreement: 'agreement', agreementRef: 'agreement ref.',
        service: 'service', providerRef: 'provider', benefit: 'benefit', amountFen: 'amount (fen)', days: 'days',
        topic: 'topic', urgency: 'urgency', subject: 'subject', result: 'result', remarks: 'remarks',
        approved: 'approved', category: 'category', outcome: 'outcome', serviceWorkers: 'service workers',
        version: 'version', replacement: 'corrected to', aboutEvents: 'about events',
        community: 'village/community', birthYear: 'birth year', maritalStatus: 'marital status', workplace: 'workplace',
        activity: 'activity', venue: 'venue', attendance: 'people reached', materials: 'items', pointRef: 'point',
        mode: 'mode', active: 'open', unitsDistributed: 'units handed out', surveyRef: 'survey round',
        respondents: 'respondents', satisfied: 'satisfied', units: 'staff by community',
        name: 'name', idNumber: 'ID number', birthDate: 'birth date', sex: 'sex', married: 'married',
        phone: 'phone', address: 'address', pregnant: 'pregnant', expectedDelivery: 'expected delivery',
        contraceptionMethod: 'contraception method', children: 'children', notes: 'notes',
        'contact.channel': 'contact channel', kind: 'kind', body: 'body', sha256: 'digest', document: 'document', certificate: 'certificate',
      },
      tiers: { identity: 'identity', contact: 'contact', health: 'health' },
      dc_channels: { replication: 'replication', downstream: 'downstream feed', http: 'API answer', stream: 'event stream', cli: 'command line' },
      er_bases: { ERASURE_BASIS_PERSON_REQUEST: 'the person\u2019s request', ERASURE_BASIS_RETENTION_EXPIRED: 'retention expired', ERASURE_BASIS_PURPOSE_FULFILLED: 'purpose fulfilled', ERASURE_BASIS_CONSENT_WITHDRAWN: 'consent withdrawn', ERASURE_BASIS_UNLAWFUL_PROCESSING: 'unlawful processing' },
      dc_tiers: { identity: 'identity', contact: 'contact', health: 'health' },
      q_summary: 'Data-quality notes: {0} ({1})',
      q_part: '{0} {1}',
      q_open: 'Show details',
      q_close: 'Hide details',
      q_failed: 'Cannot load the data-quality notes: {0}',
      q_none: 'No data-quality notes',
      q_open_person: 'Open person {0}',
      q_card_title: 'Data-quality notes ({0}): do not take these events at face value',
      q_badge: 'flagged',
      col_q_code: 'Flag',
      col_q_message: 'Explanation',
      q_codes: { 'time.defaulted': 'no time given', 'answer.orphan': 'answer without request', 'time.before_arrival': 'before arrival', 'arrival.missing': 'no arrival registered' },
      q_codes_long: {
        'time.defaulted': 'no occurred_at was given; the recording time stands in',
        'answer.orphan': 'answers a request this node does not hold',
        'time.before_arrival': 'dated before the residence registered the arrival',
        'arrival.missing': 'recorded by the residence for a person whose arrival it never registered',
      },
    },
  };

  // ---------------------------------------------------------------- state

  const TOKEN_KEY = 'yipan.token' + BASE; // one per tenant of a host
  const LANG_KEY = 'yipan.lang';
  const PAGES = ['overview', 'cases', 'person', 'record', 'flows', 'health'];

  const S = {
    token: null,
    who: null,
    lang: 'zh',
    page: null,
    nav: 0, // navigation generation: late answers of an earlier page are dropped
    signin: 0, // sign-in generation: a late whoami of an earlier token is dropped
    charts: [],
    month: null, // overview: the month shown (its quarter and year too); null = this month
    trend: { scope: '', indicator: 'all', meta: {} }, // overview trend: direction ('' = own locality), indicator id or 'all'
    cases: { kind: '', counterpart: '', direction: '', overdueOnly: false },
    answer: null, // {request, id}
    person: null, // person key of the person page
    reveal: false,
    record: { kind: 'ArrivalRegistered', side: 'residence', id: null },
    qualityOpen: false, // overview: the data-quality table is shown
    personFlags: new Map(), // person page: event id → its data-quality flags (from the cards)
  };

  // ---------------------------------------------------------------- helpers

  function t(key) {
    const dict = I18N[S.lang] || I18N.zh;
    let s = dict[key];
    if (s === undefined) s = I18N.zh[key];
    if (s === undefined) s = key;
    if (typeof s !== 'string') return key;
    // One pass: a `{1}` inside an argument (data, a server message) stays as it is.
    const args = arguments;
    return s.replace(/\{(\d)\}/g, (m, i) => (+i + 1 < args.length ? String(args[+i + 1]) : m));
  }

  /** A name from a sub-dictionary (roles, events, enums, …), falling back to Chinese, then the key. */
  function tn(group, key) {
    const d = (I18N[S.lang] || I18N.zh)[group] || {};
    if (d[key] !== undefined) return d[key];
    if (S.lang !== 'en' && I18N.zh[group] && I18N.zh[group][key] !== undefined) return I18N.zh[group][key];
    return key;
  }

  /** Creates an element. `props`: className, text, id, type, …; dataset via `data`; attributes via `attrs`. */
  function h(tag, props, children) {
    const e = document.createElement(tag);
    if (props) {
      for (const k of Object.keys(props)) {
        const v = props[k];
        if (v === undefined || v === null) continue;
        if (k === 'text') e.textContent = String(v);
        else if (k === 'className') e.className = v;
        else if (k === 'data') for (const d of Object.keys(v)) { if (v[d] !== undefined && v[d] !== null) e.dataset[d] = String(v[d]); }
        else if (k === 'attrs') for (const a of Object.keys(v)) { if (v[a] !== undefined && v[a] !== null && v[a] !== false) e.setAttribute(a, v[a] === true ? '' : String(v[a])); }
        else if (k === 'on') for (const ev of Object.keys(v)) e.addEventListener(ev, v[ev]);
        else e[k] = v;
      }
    }
    if (children !== undefined && children !== null) append(e, children);
    return e;
  }

  function append(parent, children) {
    if (!Array.isArray(children)) children = [children];
    for (const c of children) {
      if (c === undefined || c === null || c === false) continue;
      parent.appendChild(typeof c === 'string' || typeof c === 'number' ? document.createTextNode(String(c)) : c);
    }
    return parent;
  }

  function clear(e) {
    while (e.firstChild) e.removeChild(e.firstChild);
    return e;
  }

  const $ = (sel, root) => (root || document).querySelector(sel);
  const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));

  function setReady(v) {
    document.body.dataset.ready = v;
    // Time to first render, for the benchmarks (performance.getEntriesByName('ready:overview')).
    if (v && window.performance && performance.mark) performance.mark('ready:' + v);
  }

  const pad = (n, w) => String(n).padStart(w || 2, '0');

  const CN_PARTS = new Intl.DateTimeFormat('en-US', {
    timeZone: 'Asia/Shanghai', year: 'numeric', month: '2-digit', day: '2-digit',
    hour: '2-digit', minute: '2-digit', second: '2-digit', hourCycle: 'h23',
  });

  /** China-time parts of an instant. */
  function cnParts(date) {
    const p = {};
    for (const part of CN_PARTS.formatToParts(date)) p[part.type] = part.value;
    if (p.hour === '24') p.hour = '00';
    return p;
  }

  /** An RFC 3339 instant as China time `YYYY-MM-DD HH:mm`. */
  function fmtInstant(iso) {
    if (!iso) return t('dash');
    const d = new Date(iso);
    if (isNaN(d.getTime())) return String(iso);
    const p = cnParts(d);
    return p.year + '-' + p.month + '-' + p.day + ' ' + p.hour + ':' + p.minute;
  }

  /** Now as `YYYY-MM-DDTHH:mm` in China time (for datetime-local). */
  function cnLocalNow() {
    const p = cnParts(new Date());
    return p.year + '-' + p.month + '-' + p.day + 'T' + p.hour + ':' + p.minute;
  }

  /** Now as RFC 3339 with +08:00. */
  function cnNowRfc3339() {
    const p = cnParts(new Date());
    return p.year + '-' + p.month + '-' + p.day + 'T' + p.hour + ':' + p.minute + ':' + p.second + '+08:00';
  }

  /** A UUIDv7 (the node refuses event ids of other versions). */
  function uuidv7() {
    const b = new Uint8Array(16);
    crypto.getRandomValues(b);
    const ms = Date.now();
    const hi = Math.floor(ms / 0x100000000);
    const lo = ms >>> 0;
    b[0] = (hi >>> 8) & 0xff;
    b[1] = hi & 0xff;
    b[2] = (lo >>> 24) & 0xff;
    b[3] = (lo >>> 16) & 0xff;
    b[4] = (lo >>> 8) & 0xff;
    b[5] = lo & 0xff;
    b[6] = (b[6] & 0x0f) | 0x70;
    b[8] = (b[8] & 0x3f) | 0x80;
    const x = Array.from(b, (v) => v.toString(16).padStart(2, '0')).join('');
    return x.slice(0, 8) + '-' + x.slice(8, 12) + '-' + x.slice(12, 16) + '-' + x.slice(16, 20) + '-' + x.slice(20);
  }

  function may(p) {
    return !!(S.who && Array.isArray(S.who.may) && S.who.may.indexOf(p) >= 0);
  }

  function hasTier(tier) {
    return !!(S.who && Array.isArray(S.who.tiers) && S.who.tiers.indexOf(tier) >= 0);
  }

  function me() {
    return S.who ? String(S.who.locality) : '';
  }

  function qs(params) {
    const u = new URLSearchParams();
    for (const k of Object.keys(params)) {
      const v = params[k];
      if (v === undefined || v === null || v === '') continue;
      u.append(k, String(v));
    }
    return u.toString();
  }

  // ---------------------------------------------------------------- API

  class ApiError extends Error {
    constructor(status, message, body) {
      super(message);
      this.status = status;
      this.body = body || null;
    }
  }

  class SignedOut extends Error {}

  async function request(method, path, body) {
    const headers = { Authorization: 'Bearer ' + S.token, Accept: 'application/json' };
    const init = { method, headers, cache: 'no-store', credentials: 'omit', referrerPolicy: 'no-referrer' };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let r;
    try {
      r = await fetch(BASE + path, init);
    } catch (e) {
      throw new ApiError(0, t('network_error', e && e.message ? e.message : e));
    }
    if (r.status === 401) {
      signOut(t('signin_invalid'));
      throw new SignedOut('401');
    }
    return r;
  }

  async function errorOf(r) {
    let body = null;
    let msg = r.status + ' ' + (r.statusText || '');
    try {
      const text = await r.text();
      try {
        body = JSON.parse(text);
        if (body && typeof body.error === 'string') msg = body.error;
      } catch (_) {
        if (text) msg = text.slice(0, 300);
      }
    } catch (_) { /* keep the status */ }
    if (r.status === 403) msg = t('forbidden', msg);
    return new ApiError(r.status, msg, body);
  }

  /** JSON of a call; rejects with ApiError (message from `{"error"}`). */
  async function api(method, path, body) {
    const r = await request(method, path, body);
    if (!r.ok) throw await errorOf(r);
    const data = await r.json();
    return { data, headers: r.headers, status: r.status };
  }

  const get = (path) => api('GET', path).then((x) => x.data);

  // ---------------------------------------------------------------- division names

  /** Names of division codes from the node's registry: code → name, or null (not in the registry). */
  const NAMES = new Map();
  /** Codes being looked up: code → the promise of the call asking for them. */
  const NAMES_ASKED = new Map();
  /** At most this many codes per call (the node's limit). */
  const NAMES_BATCH = 1000;
  /** A page waits at most this long for names; then it shows the bare codes. */
  const NAMES_WAIT_MS = 4000;
  /** The node has no registry (an older version): not asked again. */
  let namesOff = false;
  /** After a call timed out or failed on the network, pages do not wait for names until then. */
  let namesPausedUntil = 0;

  /** `c` if it is a county- (6 digits) or township-level (9 digits) code, else ''. */
  function divisionCode(c) {
    const s = c === undefined || c === null ? '' : String(c).trim();
    return /^\d{6}(\d{3})?$/.test(s) ? s : '';
  }

  /** One call for up to NAMES_BATCH codes, given up after NAMES_WAIT_MS; failures are ignored (the codes stay bare). */
  async function fetchNames(batch) {
    const ctl = typeof AbortController === 'function' ? new AbortController() : null;
    const timer = ctl ? setTimeout(() => ctl.abort(), NAMES_WAIT_MS) : null;
    try {
      const r = await fetch(BASE + '/v1/divisions?' + qs({ codes: batch.join(',') }), {
        headers: { Authorization: 'Bearer ' + S.token, Accept: 'application/json' },
        cache: 'no-store', credentials: 'omit', referrerPolicy: 'no-referrer',
        signal: ctl ? ctl.signal : undefined,
      });
      if (r.status === 404) { namesOff = true; return; }
      if (!r.ok) return;
      const data = await r.json();
      if (!data || typeof data !== 'object') return;
      for (const c of batch) {
        const v = data[c];
        if (typeof v === 'string' && v) NAMES.set(c, v);
        else if (v === null) NAMES.set(c, null);
      }
    } catch (_) {
      // Shown as bare codes; the next pages do not wait for the registry for a while.
      namesPausedUntil = Date.now() + 30000;
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Looks up the names of the `codes` not known yet (one call per 1,000 codes; codes
   * already being looked up are waited for, not asked again). Never rejects; a call
   * is given up after NAMES_WAIT_MS.
   */
  function ensureNames(codes) {
    const waits = new Set();
    const missing = new Set();
    for (const c of codes || []) {
      const code = divisionCode(c);
      if (!code || NAMES.has(code)) continue;
      if (NAMES_ASKED.has(code)) waits.add(NAMES_ASKED.get(code));
      else missing.add(code);
    }
    if (missing.size && !namesOff && S.token && Date.now() >= namesPausedUntil) {
      const all = Array.from(missing);
      for (let i = 0; i < all.length; i += NAMES_BATCH) {
        const batch = all.slice(i, i + NAMES_BATCH);
        const p = fetchNames(batch).then(() => {
          for (const c of batch) if (NAMES_ASKED.get(c) === p) NAMES_ASKED.delete(c);
        });
        for (const c of batch) NAMES_ASKED.set(c, p);
        waits.add(p);
      }
    }
    return waits.size ? Promise.all(Array.from(waits)).then(() => undefined) : Promise.resolve();
  }

  /** The known name of a code, or ''. */
  function nameOf(code) {
    const c = divisionCode(code);
    const n = c ? NAMES.get(c) : undefined;
    return typeof n === 'string' ? n : '';
  }

  /** A code with its name: <span class="division"><span class="code">610112</span> <span class="place">未央区</span></span>. */
  function place(code) {
    const s = code === undefined || code === null ? '' : String(code);
    const name = nameOf(s);
    return h('span', { className: 'division' }, [
      h('span', { className: 'code', text: s }),
      name ? ' ' : null,
      name ? h('span', { className: 'place', text: name }) : null,
    ]);
  }

  /** A code with its name as plain text (option labels): "610112 未央区". */
  function placeText(code) {
    const s = code === undefined || code === null ? '' : String(code);
    const name = nameOf(s);
    return name ? s + ' ' + name : s;
  }

  /** Like t(), but the arguments may be nodes: the pieces to append(). */
  function tx(key) {
    const args = Array.prototype.slice.call(arguments, 1);
    const s = t(key);
    const out = [];
    let last = 0;
    s.replace(/\{(\d)\}/g, (m, i, off) => {
      if (off > last) out.push(s.slice(last, off));
      const a = args[+i];
      out.push(a === undefined || a === null ? m : a instanceof Node ? a : String(a));
      last = off + m.length;
      return m;
    });
    if (last < s.length) out.push(s.slice(last));
    return out;
  }

  /** The codes of events (author, origin, residence, a township or destination in the body). */
  function codesOfEvents(events) {
    const out = [];
    for (const ev of Array.isArray(events) ? events : []) {
      out.push(ev.author, ev.origin, ev.residence);
      if (ev.body && typeof ev.body === 'object') out.push(ev.body.township, ev.body.destination);
    }
    return out;
  }

  /** The locality codes of a disclosure log (its recipients and authors). */
  function codesOfDisclosures(data) {
    const out = [];
    for (const d of data && Array.isArray(data.entries) ? data.entries : []) out.push(d.recipient, d.author);
    return out;
  }

  // ---------------------------------------------------------------- errors

  function showPageError(e) {
    if (e instanceof SignedOut) return;
    const box = $('#page-error');
    box.textContent = t('error_prefix') + (e && e.message ? e.message : String(e));
    box.hidden = false;
    // The box heads the page: bring it into view when the user acted further down.
    const r = box.getBoundingClientRect();
    const top = $('#topbar') ? $('#topbar').offsetHeight : 0;
    if (r.top < top || r.bottom > window.innerHeight) box.scrollIntoView({ block: 'start' });
  }

  function clearPageError() {
    const box = $('#page-error');
    box.textContent = '';
    box.hidden = true;
  }

  // ---------------------------------------------------------------- export

  /** The pair of export buttons of a table. `params`: the table's query parameters. */
  function exportButtons(table, params) {
    const q = qs(params || {});
    const mk = (format, label) => h('button', {
      type: 'button', className: 'btn btn-small export', text: t(label),
      data: { table, format, query: q },
    });
    return h('span', { className: 'exports' }, [mk('csv', 'export_csv'), mk('xlsx', 'export_xlsx')]);
  }

  function filenameOf(disposition, fallback) {
    if (!disposition) return fallback;
    let m = /filename\*\s*=\s*(?:UTF-8|utf-8)''([^;]+)/.exec(disposition);
    if (m) {
      try { return decodeURIComponent(m[1].trim().replace(/^"|"$/g, '')); } catch (_) { /* fall through */ }
    }
    m = /filename\s*=\s*"([^"]+)"/.exec(disposition) || /filename\s*=\s*([^;]+)/.exec(disposition);
    if (m) return m[1].trim();
    return fallback;
  }

  async function doExport(btn) {
    const table = btn.dataset.table;
    const format = btn.dataset.format;
    const q = btn.dataset.query || '';
    const url = '/v1/export?' + qs({ table, format, lang: S.lang === 'en' ? 'en' : '' }) + (q ? '&' + q : '');
    btn.disabled = true;
    try {
      const r = await request('GET', url);
      if (!r.ok) throw await errorOf(r);
      const blob = await r.blob();
      const name = filenameOf(r.headers.get('Content-Disposition'), 'yipan-' + table + '.' + format);
      const href = URL.createObjectURL(blob);
      const a = h('a', { href, download: name, className: 'hidden-link' });
      document.body.appendChild(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(href), 60000);
    } catch (e) {
      if (!(e instanceof SignedOut)) showPageError(new Error(t('export_failed', e.message || e)));
    } finally {
      btn.disabled = false;
    }
  }

  // ---------------------------------------------------------------- charts

  const CHART_FONT = '"PingFang SC","Microsoft YaHei","Noto Sans CJK SC","WenQuanYi Micro Hei",sans-serif';

  function makeChart(container) {
    if (typeof echarts === 'undefined') return null;
    const c = echarts.init(container, null, { renderer: 'canvas' });
    c.setOption({ textStyle: { fontFamily: CHART_FONT } });
    S.charts.push(c);
    return c;
  }

  function disposeCharts() {
    for (const c of S.charts) {
      try { c.dispose(); } catch (_) { /* already gone */ }
    }
    S.charts = [];
  }

  let resizeTimer = null;
  window.addEventListener('resize', () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => {
      for (const c of S.charts) {
        try { c.resize(); } catch (_) { /* disposed */ }
      }
    }, 100);
  });

  // ---------------------------------------------------------------- common render bits

  function sectionHead(title, extra) {
    return h('div', { className: 'section-head' }, [h('h2', null, title), extra ? h('div', { className: 'section-tools' }, extra) : null]);
  }

  function table(id, columns, cls) {
    const thead = h('thead', null, h('tr', null, columns.map((c) => h('th', { text: c }))));
    return h('table', { id: id || undefined, className: 'grid' + (cls ? ' ' + cls : '') }, [thead, h('tbody')]);
  }

  function emptyRow(tbody, span, text) {
    tbody.appendChild(h('tr', { className: 'empty' }, h('td', { text: text || t('none'), attrs: { colspan: span } })));
  }

  function pageHeader(container, title, tools) {
    container.appendChild(h('div', { className: 'page-head' }, [h('h1', { text: title }), tools ? h('div', { className: 'page-tools' }, tools) : null]));
  }

  // ---------------------------------------------------------------- overview

  const PERIOD_KINDS = ['month', 'quarter', 'year'];

  /** The business month today ('YYYY-MM', China time). */
  function currentMonth() {
    // The statistics month holding today (months close on the 20th by default).
    return (S.who && S.who.statistics_month) || ((S.who && S.who.today) || cnLocalNow()).slice(0, 7);
  }

  /** The month, the quarter and the year holding `month` ('YYYY-MM'). */
  function periodsOf(month) {
    const y = month.slice(0, 4);
    const m = parseInt(month.slice(5, 7), 10);
    return { month, quarter: y + '-Q' + Math.ceil(m / 3), year: y };
  }

  /** The last `n` months up to this one, newest first. */
  function recentMonths(n) {
    const cur = currentMonth();
    let y = parseInt(cur.slice(0, 4), 10);
    let m = parseInt(cur.slice(5, 7), 10);
    const out = [];
    for (let i = 0; i < n; i++) {
      out.push(y + '-' + pad(m));
      m -= 1;
      if (m < 1) { m = 12; y -= 1; }
    }
    return out;
  }

  function isStaffing(ind) {
    return ind.comparison === 'at_most' || (!ind.comparison && ind.id === 'staffing');
  }

  function fmtNumber(v) {
    return Number.isInteger(v) ? String(v) : v.toFixed(1);
  }

  function fmtValue(ind) {
    if (ind.value === null || ind.value === undefined) return t('dash');
    if (isStaffing(ind)) return fmtNumber(Number(ind.value));
    return (Number(ind.value) * 100).toFixed(1) + '%';
  }

  function fmtTarget(ind) {
    if (ind.target === null || ind.target === undefined) return t('dash');
    if (isStaffing(ind)) return '≤' + fmtNumber(Number(ind.target));
    const pct = Math.round(Number(ind.target) * 1000) / 10;
    return '≥' + fmtNumber(pct) + '%';
  }

  function passText(pass) {
    return pass === true ? t('pass_yes') : pass === false ? t('pass_no') : t('pass_na');
  }

  function passClass(pass) {
    return pass === true ? 'pass' : pass === false ? 'fail' : 'na';
  }

  function indicatorName(ind) {
    return (S.lang === 'en' ? ind.name_en : ind.name_zh) || ind.name_zh || ind.name_en || ind.id;
  }

  /** Column heads of the three periods: "本月 / 2026-11". */
  function periodHeads(periods, current) {
    return PERIOD_KINDS.map((k) => {
      const b = S.bounds && S.bounds.periods && S.bounds.periods[k] === periods[k] ? S.bounds.days[k] : null;
      const days = b ? b[0].slice(5) + '–' + b[1].slice(5) : '';
      return h('th', { className: 'period', data: { period: k, from: b ? b[0] : '', to: b ? b[1] : '' }, title: b ? b[0] + ' – ' + b[1] : undefined }, [
        h('span', { text: t((current ? 'ov_cur_' : 'ov_sel_') + k) }),
        h('span', { className: 'period-code', text: periods[k] }),
        days ? h('span', { className: 'period-code period-days', text: days }) : null,
      ]);
    });
  }

  /** One period cell: the value, the numerator/denominator underneath, pass/fail/na. */
  function periodCell(kind, period, ind, error) {
    if (error) {
      return h('td', { className: 'num period na', data: { period: kind }, title: period + ' · ' + error }, t('dash'));
    }
    if (!ind) return h('td', { className: 'num period na', data: { period: kind }, title: period }, t('dash'));
    const cls = passClass(ind.pass);
    const frac = ind.numerator + ' / ' + ind.denominator;
    const title = period + ' · ' + passText(ind.pass) + ' · ' + t('col_fraction') + ' ' + frac + (ind.target !== null && ind.target !== undefined ? ' · ' + t('col_target') + ' ' + fmtTarget(ind) : '');
    return h('td', { className: 'num period ' + cls, data: { period: kind }, title }, [
      h('span', { className: 'mark', text: ind.pass === true ? '✓' : ind.pass === false ? '✗' : '' }),
      h('span', { className: 'value', text: fmtValue(ind) }),
      h('span', { className: 'frac', text: frac }),
    ]);
  }

  /**
   * A scorecard table: indicator | target | month | quarter | year.
   * `cards`: {month, quarter, year}, each {card} or {error}.
   */
  function scorecardTable(id, cards, periods, current, direction) {
    const thead = h('thead', null, h('tr', null, [
      h('th', { className: 'name', text: t('col_indicator') }),
      h('th', { className: 'target', text: t('col_target') }),
    ].concat(periodHeads(periods, current))));
    const tbl = h('table', { id: id || undefined, className: 'grid scorecard' }, [thead, h('tbody')]);
    if (direction) tbl.dataset.direction = direction;
    else tbl.dataset.scope = 'locality';
    const tb = tbl.tBodies[0];
    // Rows: every indicator of any of the three cards, in the order the node gives.
    const order = [];
    const byKind = {};
    for (const k of PERIOD_KINDS) {
      byKind[k] = {};
      const c = cards[k] && cards[k].card;
      for (const ind of (c && c.indicators) || []) {
        byKind[k][ind.id] = ind;
        if (order.indexOf(ind.id) < 0) order.push(ind.id);
      }
    }
    for (const iid of order) {
      const any = byKind.month[iid] || byKind.quarter[iid] || byKind.year[iid];
      tb.appendChild(h('tr', { data: { indicator: iid } }, [
        h('td', { className: 'name', text: indicatorName(any) }),
        h('td', { className: 'num target', text: fmtTarget(any) }),
      ].concat(PERIOD_KINDS.map((k) => periodCell(k, periods[k], byKind[k][iid], cards[k] && cards[k].error)))));
    }
    if (!tb.rows.length) emptyRow(tb, 5);
    return tbl;
  }

  /**
   * Runs `tasks` (functions returning promises) at most `n` at a time; settles like
   * Promise.allSettled. Stops starting new ones once `stop()` says so (left: undefined).
   */
  function settleLimited(tasks, n, stop) {
    const out = new Array(tasks.length);
    let next = 0;
    const worker = async () => {
      while (next < tasks.length && !(stop && stop())) {
        const i = next++;
        try { out[i] = { status: 'fulfilled', value: await tasks[i]() }; } catch (e) { out[i] = { status: 'rejected', reason: e }; }
      }
    };
    const workers = [];
    for (let i = 0; i < Math.min(n, tasks.length); i++) workers.push(worker());
    return Promise.all(workers).then(() => out);
  }

  /** The scopes of the overview: the own locality, then both directions with each counterpart. */
  function overviewScopes() {
    const mine = me();
    const scopes = [{ direction: '' }];
    for (const c of (S.who.counterparts || []).map(String)) {
      scopes.push({ direction: mine + ',' + c, counterpart: c, side: 'out' });
      scopes.push({ direction: c + ',' + mine, counterpart: c, side: 'in' });
    }
    return scopes;
  }

  /** A trend scope's label, with the counterpart's name. */
  function scopeLabel(s) {
    if (!s.counterpart) return t('tr_scope_own');
    return t(s.side === 'out' ? 'tr_scope_out' : 'tr_scope_in', placeText(s.counterpart));
  }

  async function loadOverview(root, gen) {
    const months = recentMonths(24);
    const cur = months[0];
    if (!S.month || months.indexOf(S.month) < 0) S.month = cur;
    const current = S.month === cur;
    const periods = periodsOf(S.month);

    const sel = h('select', { id: 'overview-period' }, months.map((m) => h('option', {
      value: m, text: t('period_month', m.slice(0, 4), m.slice(5, 7)) + (m === cur ? t('ov_this_month_suffix') : ''),
    })));
    sel.value = S.month;
    sel.addEventListener('change', () => {
      S.month = sel.value;
      navigate();
    });
    const tools = [h('label', { className: 'inline', htmlFor: 'overview-period', text: t('ov_month') }), sel];
    if (!current) {
      tools.push(h('button', {
        type: 'button', id: 'overview-current', className: 'btn btn-small', text: t('ov_back_current'),
        on: { click: () => { S.month = cur; navigate(); } },
      }));
    }
    pageHeader(root, t('ov_title'), tools);
    root.appendChild(h('p', { className: 'muted small ov-note', text: current ? t('ov_note_current', (S.who && S.who.month_closes_on_day) || 20) : t('ov_note_earlier', periods.month, periods.quarter, periods.year) }));

    const scopes = overviewScopes();
    const trendScope = scopes.some((s) => s.direction === S.trend.scope) ? S.trend.scope : '';
    S.trend.scope = trendScope;
    // Everything from one call: one pass over the locality's relationships on the
    // node (a city has hundreds of origins); a direction's trend is a second call.
    const tasks = [() => get('/v1/scorecard/overview?' + qs({ period: periods.month, months: 12 }))];
    if (trendScope) tasks.push(() => get('/v1/scorecard/trend?' + qs({ months: 12, direction: trendScope })));
    // The names of the locality and its counterparts (asked at sign-in), alongside.
    ensureNames([me()].concat(S.who.counterparts || []));
    const res = await settleLimited(tasks, 2, () => gen !== S.nav);
    if (gen !== S.nav) return;
    const errors = res.filter((r) => r.status === 'rejected').map((r) => r.reason);
    if (errors.some((e) => e instanceof SignedOut)) return;
    const errorText = (r) => (r.reason && r.reason.message ? r.reason.message : String(r.reason));
    const ov = res[0].status === 'fulfilled' ? res[0].value : null;
    // Each period's days (statistics months close on the catalogue's day, default the 20th).
    S.bounds = ov && ov.bounds ? { periods: ov.periods, days: ov.bounds } : null;
    const ovError = ov ? null : errorText(res[0]);
    const trendRes = trendScope ? res[1] : (ov ? { status: 'fulfilled', value: { periods: ov.trend } } : res[0]);

    // cards[0] is the own locality; then (out, in) for each counterpart in the
    // order the node ranks them (most indicators missed this month first).
    // Counterparts' indicators come without names and targets: take them from the own ones.
    const meta = {};
    for (const ind of (ov && ov.own && ov.own.month) || []) meta[ind.id] = ind;
    const asCards = (byKind) => {
      const o = {};
      for (const k of PERIOD_KINDS) {
        const inds = ((byKind && byKind[k]) || []).map((i) => Object.assign({}, meta[i.id] || {}, i));
        o[k] = ovError ? { error: ovError } : { card: { indicators: inds, as_of: ov.as_of } };
      }
      return o;
    };
    const cards = [asCards(ov && ov.own)];
    const rows = {};
    const ranked = [];
    for (const row of (ov && ov.counterparts) || []) {
      rows[String(row.counterpart)] = row;
      ranked.push(String(row.counterpart));
    }
    for (const c of (S.who.counterparts || []).map(String)) if (ranked.indexOf(c) < 0) ranked.push(c);
    await ensureNames([me()].concat(ranked));
    if (gen !== S.nav) return;
    const dirScopes = [];
    for (const c of ranked) {
      for (const side of ['out', 'in']) {
        dirScopes.push({ direction: side === 'out' ? me() + ',' + c : c + ',' + me(), counterpart: c, side });
        const row = rows[c];
        cards.push(asCards(row ? (side === 'out' ? row.outbound : row.inbound) : null));
      }
    }
    // Names and comparisons of the indicators, for the trend (whose answer has neither).
    S.trend.meta = {};
    for (const o of cards) {
      for (const k of PERIOD_KINDS) {
        for (const ind of (o[k].card && o[k].card.indicators) || []) {
          if (!S.trend.meta[ind.id]) S.trend.meta[ind.id] = { id: ind.id, name_zh: ind.name_zh, name_en: ind.name_en, comparison: ind.comparison };
        }
      }
    }
    const exportHint = t('ov_export_hint', periods.month);
    const exportsOf = (direction) => {
      const ex = exportButtons('scorecard', { period: periods.month, direction });
      for (const b of $$('button', ex)) b.title = exportHint;
      return ex;
    };

    const block = h('div', { className: 'panel' });
    block.appendChild(sectionHead(tx('ov_own', place(me())), exportsOf('')));
    const ownMonth = cards[0].month.card;
    if (ownMonth && ownMonth.as_of) block.appendChild(h('p', { className: 'muted small', text: t('ov_as_of', fmtInstant(ownMonth.as_of)) }));
    block.appendChild(scorecardTable('overview-table', cards[0], periods, current, null));
    // Data-quality notes of this locality's relationships, under its own scorecard (absent when none).
    const quality = ov ? qualitySummary(ov.quality, ov.as_of, gen) : null;
    if (quality) block.appendChild(quality);
    root.appendChild(block);

    // Both directions with each counterpart, worst first; the first few at once, the rest on request.
    const SHOWN = 10;
    const pairs = h('div', { className: 'pairs', id: 'overview-pairs' });
    const pairOf = (n) => {
      const i = 1 + 2 * n;
      const c = dirScopes[2 * n].counterpart;
      const wrap = h('div', { className: 'panel pair', data: { counterpart: c } });
      for (const j of [i, i + 1]) {
        const sc = dirScopes[j - 1];
        const side = h('div', { className: 'pair-side', data: { side: sc.side } });
        side.appendChild(sectionHead(tx(sc.side === 'out' ? 'ov_dir_out' : 'ov_dir_in', place(c)), exportsOf(sc.direction)));
        side.appendChild(scorecardTable(null, cards[j], periods, current, sc.direction));
        wrap.appendChild(side);
      }
      return wrap;
    };
    const total = ranked.length;
    for (let n = 0; n < Math.min(SHOWN, total); n++) pairs.appendChild(pairOf(n));
    root.appendChild(pairs);
    if (total > SHOWN) {
      const more = h('button', { type: 'button', id: 'overview-more', className: 'btn', text: t('ov_more', total - SHOWN, total) });
      more.addEventListener('click', () => {
        for (let n = SHOWN; n < total; n++) pairs.appendChild(pairOf(n));
        more.remove();
      });
      root.appendChild(h('div', { className: 'panel' }, [
        h('p', { className: 'muted small', text: t('ov_more_note', SHOWN) }),
        more,
        exportButtons('counterparts', { period: periods.month }),
      ]));
    }

    trendPanel(root, scopes, trendRes, gen);
    // The detail table was open (a language switch, another month): shown again before the page is ready.
    if (quality && S.qualityOpen) await openQuality(quality, ov.as_of, gen);
    if (errors.length) showPageError(errors[0]);
  }

  // ---------------------------------------------------------------- data-quality flags

  /** The flag codes, in the order they are listed. */
  const QUALITY_CODES = ['time.defaulted', 'answer.orphan', 'time.before_arrival', 'arrival.missing'];

  /** The short label of a flag code (the code itself when unknown). */
  function qualityLabel(code) {
    return tn('q_codes', String(code || ''));
  }

  /** What a flag code means, or '' when unknown. */
  function qualityMeaning(code) {
    const c = String(code || '');
    const v = tn('q_codes_long', c);
    return v === c ? '' : v;
  }

  /** A flag's message in the current language. */
  function qualityMessage(f) {
    const m = S.lang === 'en' ? f.message : (f.message_zh || f.message);
    return String(m || qualityMeaning(f.code) || f.code || '');
  }

  /** `{code: count}` as [[code, count]] with count > 0: the known codes first, in their order. */
  function qualityCounts(counts) {
    const out = [];
    if (!counts || typeof counts !== 'object') return out;
    const keys = QUALITY_CODES.concat(Object.keys(counts).filter((k) => QUALITY_CODES.indexOf(k) < 0).sort());
    for (const k of keys) {
      const n = Number(counts[k]);
      if (isFinite(n) && n > 0) out.push([k, n]);
    }
    return out;
  }

  /**
   * The overview's notice `#quality-summary` ("数据质量提示：N 条（…）") with the button
   * `#quality-open` that shows `#quality-table`; null when there is no flag.
   */
  function qualitySummary(counts, asOf, gen) {
    const list = qualityCounts(counts);
    const total = list.reduce((a, x) => a + x[1], 0);
    if (!total) return null;
    const parts = list.map((x) => t('q_part', qualityLabel(x[0]), x[1])).join(t('list_sep'));
    const btn = h('button', {
      type: 'button', id: 'quality-open', className: 'btn btn-small', text: t('q_open'),
      attrs: { 'aria-expanded': 'false', 'aria-controls': 'quality-detail' },
    });
    const box = h('div', { id: 'quality-summary', className: 'quality-summary', attrs: { role: 'note' }, data: { count: total } }, [
      h('div', { className: 'quality-line' }, [
        h('span', { className: 'quality-text', text: t('q_summary', total, parts) }),
        btn,
      ]),
      h('div', { id: 'quality-detail', className: 'quality-detail scroll-x', hidden: true }),
    ]);
    btn.addEventListener('click', async () => {
      if (S.qualityOpen) { showQualityDetail(box, false); return; }
      setReady('');
      await openQuality(box, asOf, gen);
      if (gen === S.nav) setReady('overview');
    });
    return box;
  }

  function showQualityDetail(box, open) {
    S.qualityOpen = open;
    const btn = $('#quality-open', box);
    const detail = $('#quality-detail', box);
    if (detail) detail.hidden = !open;
    if (btn) {
      btn.textContent = t(open ? 'q_close' : 'q_open');
      btn.setAttribute('aria-expanded', open ? 'true' : 'false');
    }
  }

  /** Loads the flags (as of the overview's instant) into the notice's table and shows it. */
  async function openQuality(box, asOf, gen) {
    const btn = $('#quality-open', box);
    const detail = $('#quality-detail', box);
    if (!detail) return;
    if (btn) btn.disabled = true;
    showQualityDetail(box, true);
    clear(detail);
    detail.appendChild(h('p', { className: 'muted small', text: t('loading') }));
    try {
      const data = await get('/v1/quality?' + qs({ as_of: asOf }));
      if (gen !== S.nav) return;
      const flags = data && Array.isArray(data.flags) ? data.flags : [];
      const codes = [];
      for (const f of flags) {
        codes.push(f.author);
        if (f.rel) codes.push(f.rel.origin, f.rel.residence);
      }
      await ensureNames(codes);
      if (gen !== S.nav) return;
      clear(detail);
      detail.appendChild(qualityTable(flags));
    } catch (e) {
      if (e instanceof SignedOut || gen !== S.nav) return;
      clear(detail);
      detail.appendChild(h('div', { id: 'quality-error', className: 'error-text', attrs: { role: 'alert' }, text: t('q_failed', e && e.message ? e.message : String(e)) }));
    } finally {
      if (btn) btn.disabled = false;
    }
  }

  /** `#quality-table`: one row per flag, `tr[data-event][data-code]`. */
  function qualityTable(flags) {
    const tbl = table('quality-table', [t('col_author'), t('col_event'), t('col_person'), t('col_q_code'), t('col_q_message')], 'quality');
    const tb = tbl.tBodies[0];
    for (const f of flags) {
      const person = f.rel && f.rel.person ? String(f.rel.person) : '';
      const personCell = person
        ? h('button', {
          type: 'button', className: 'link-btn mono quality-person', text: person.slice(0, 8),
          title: t('q_open_person', person), data: { person },
          on: { click: () => openPersonPage(person) },
        })
        : t('dash');
      tb.appendChild(h('tr', { data: { event: f.event, code: f.code } }, [
        h('td', { className: 'nowrap' }, authorCell(String(f.author || ''), f.seq)),
        h('td', { className: 'nowrap', text: tn('events', String(f.kind || '')) }),
        h('td', { className: 'nowrap' }, personCell),
        h('td', { className: 'nowrap quality-code', text: qualityLabel(f.code), title: qualityMeaning(f.code) || String(f.code || '') }),
        h('td', { className: 'reason', text: qualityMessage(f) }),
      ]));
    }
    if (!tb.rows.length) emptyRow(tb, 5, t('q_none'));
    return tbl;
  }

  /** Opens the person page for a person key. */
  function openPersonPage(key) {
    S.person = key;
    S.reveal = false;
    if (pageFromHash() === 'person') navigate();
    else location.hash = '#/person';
  }

  /** A card's warning strip `.card-quality`: each flag's event, author#seq and message. */
  function cardQuality(flags) {
    const list = Array.isArray(flags) ? flags.filter((f) => f && typeof f === 'object') : [];
    if (!list.length) return null;
    return h('div', { className: 'card-quality', attrs: { role: 'note' }, data: { count: list.length } }, [
      h('div', { className: 'card-quality-head', text: t('q_card_title', list.length) }),
      h('ul', null, list.map((f) => h('li', { data: { event: f.event, code: f.code } }, [
        h('span', { className: 'q-kind', text: tn('events', String(f.kind || '')) }),
        h('span', { className: 'q-author' }, authorCell(String(f.author || ''), f.seq)),
        h('span', { className: 'q-code', text: qualityLabel(f.code), title: qualityMeaning(f.code) || String(f.code || '') }),
        h('span', { className: 'q-message', text: qualityMessage(f) }),
      ]))),
    ]);
  }

  /** The flags of the cards by event id (for the timeline's badges). */
  function flagsByEvent(cards) {
    const m = new Map();
    for (const card of Array.isArray(cards) ? cards : []) {
      for (const f of (card && Array.isArray(card.quality)) ? card.quality : []) {
        if (!f || !f.event) continue;
        const id = String(f.event);
        if (!m.has(id)) m.set(id, []);
        if (!m.get(id).some((g) => g.code === f.code)) m.get(id).push(f);
      }
    }
    return m;
  }

  // ---------------------------------------------------------------- overview: trend

  function trendIndicatorIds(periods) {
    const ids = [];
    for (const p of periods) for (const ind of p.indicators || []) if (ids.indexOf(ind.id) < 0) ids.push(ind.id);
    return ids;
  }

  function trendMeta(id) {
    return S.trend.meta[id] || { id, comparison: id === 'staffing' ? 'at_most' : 'at_least' };
  }

  function isRatio(id) {
    return !isStaffing(trendMeta(id));
  }

  function trendPanel(root, scopes, first, gen) {
    const panel = h('div', { className: 'panel', id: 'trend-panel' });
    const scopeSel = h('select', { id: 'trend-scope' }, scopes.map((s) => h('option', { value: s.direction, text: scopeLabel(s) })));
    scopeSel.value = S.trend.scope;
    const indSel = h('select', { id: 'trend-indicator' });
    const exports = h('span', { id: 'trend-exports' });
    panel.appendChild(sectionHead(t('ov_trend'), [
      h('label', { className: 'inline', htmlFor: 'trend-scope', text: t('tr_scope') }), scopeSel,
      h('label', { className: 'inline', htmlFor: 'trend-indicator', text: t('tr_indicator') }), indSel,
      exports,
    ]));
    const chartBox = h('div', { id: 'trend-chart', className: 'chart', attrs: { role: 'img', 'aria-label': t('ov_trend') } });
    panel.appendChild(chartBox);
    panel.appendChild(h('h3', { text: t('ov_trend_table') }));
    const tableBox = h('div', { className: 'scroll-x', id: 'trend-table-box' });
    panel.appendChild(tableBox);
    const err = h('div', { id: 'trend-error', className: 'error-box', attrs: { role: 'alert' }, hidden: true });
    panel.insertBefore(err, chartBox);

    let periods = [];
    const fillIndicators = () => {
      const ids = trendIndicatorIds(periods);
      clear(indSel);
      indSel.appendChild(h('option', { value: 'all', text: t('tr_all_rates') }));
      for (const id of ids) indSel.appendChild(h('option', { value: id, text: indicatorName(trendMeta(id)) }));
      if (S.trend.indicator !== 'all' && ids.indexOf(S.trend.indicator) < 0) S.trend.indicator = 'all';
      indSel.value = S.trend.indicator;
    };
    const show = (data, error) => {
      periods = (data && Array.isArray(data.periods)) ? data.periods : [];
      err.textContent = error ? t('error_prefix') + error : '';
      err.hidden = !error;
      clear(exports);
      exports.appendChild(exportButtons('trend', { months: 12, direction: S.trend.scope }));
      fillIndicators();
      clear(tableBox);
      tableBox.appendChild(trendTable(periods));
      if (!error) renderTrendChart(chartBox, periods);
      else { const c = S.charts.find((x) => x.getDom && x.getDom() === chartBox); if (c) c.clear(); }
    };
    scopeSel.addEventListener('change', async () => {
      S.trend.scope = scopeSel.value;
      setReady('');
      scopeSel.disabled = true;
      try {
        const data = await get('/v1/scorecard/trend?' + qs({ months: 12, direction: S.trend.scope }));
        if (gen !== S.nav) return;
        show(data, null);
      } catch (e) {
        if (e instanceof SignedOut || gen !== S.nav) return;
        show(null, e.message || String(e));
      } finally {
        scopeSel.disabled = false;
      }
      if (gen === S.nav) setReady('overview');
    });
    indSel.addEventListener('change', () => {
      S.trend.indicator = indSel.value;
      renderTrendChart(chartBox, periods);
    });
    // Rendered in the document (the chart takes its size from the box).
    root.appendChild(panel);
    if (first.status === 'fulfilled') show(first.value, null);
    else show(null, first.reason && first.reason.message ? first.reason.message : String(first.reason));
  }

  function trendTable(periods) {
    const ids = trendIndicatorIds(periods);
    const tbl = table('trend-table', [t('col_indicator')].concat(periods.map((p) => p.period)), 'trend');
    // Not data-direction: that names the scorecard tables.
    tbl.dataset.trendScope = S.trend.scope || 'locality';
    const tb = tbl.tBodies[0];
    for (const id of ids) {
      const meta = trendMeta(id);
      const tr = h('tr', { data: { indicator: id } }, h('td', { className: 'name', text: indicatorName(meta) }));
      for (const p of periods) {
        const ind = (p.indicators || []).find((x) => x.id === id);
        if (!ind) { tr.appendChild(h('td', { className: 'na', text: t('dash') })); continue; }
        const full = { id, value: ind.value, target: ind.target, comparison: meta.comparison };
        tr.appendChild(h('td', {
          className: 'num ' + passClass(ind.pass), text: fmtValue(full), data: { month: p.period },
          title: p.period + ' · ' + passText(ind.pass) + ' · ' + t('col_fraction') + ' ' + ind.numerator + ' / ' + ind.denominator,
        }));
      }
      tb.appendChild(tr);
    }
    if (!ids.length) emptyRow(tb, periods.length + 1);
    return tbl;
  }

  /** The smallest 'round' number (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8 × 10^k) not below `v`. */
  function niceCeil(v) {
    const mag = Math.pow(10, Math.floor(Math.log10(v)));
    for (const f of [1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) if (f * mag >= v) return f * mag;
    return 10 * mag;
  }

  const TREND_COLORS = ['#2f6eb5', '#e6a23c', '#1a7f37', '#c62828', '#7b5ea7', '#00838f', '#ad1457', '#6d4c41', '#546e7a', '#9e9d24'];

  function renderTrendChart(box, periods) {
    let chart = S.charts.find((c) => c.getDom && c.getDom() === box);
    if (!chart) chart = makeChart(box);
    if (!chart) return;
    const x = periods.map((p) => p.period);
    const ids = trendIndicatorIds(periods);
    const single = S.trend.indicator !== 'all' && ids.indexOf(S.trend.indicator) >= 0 ? S.trend.indicator : null;
    const ratio = single ? isRatio(single) : true;
    const shown = single ? [single] : ids.filter(isRatio);
    const valueOf = (ind) => {
      if (!ind || ind.value === null || ind.value === undefined) return null;
      return ratio ? Math.round(ind.value * 1000) / 10 : Math.round(ind.value * 10) / 10;
    };
    let any = false;
    const series = shown.map((id) => ({
      name: indicatorName(trendMeta(id)),
      type: 'line',
      connectNulls: false,
      symbolSize: single ? 9 : 7,
      showSymbol: true,
      data: periods.map((p) => {
        const ind = (p.indicators || []).find((v) => v.id === id);
        const v = valueOf(ind);
        if (v === null) return null;
        any = true;
        // A single indicator: each point coloured by pass / fail.
        if (single && (ind.pass === true || ind.pass === false)) return { value: v, itemStyle: { color: ind.pass ? '#1a7f37' : '#c62828' } };
        return v;
      }),
    }));
    let targetMax = 0;
    if (single && series.length) {
      const targets = [];
      for (const p of periods) {
        const ind = (p.indicators || []).find((v) => v.id === single);
        if (ind && typeof ind.target === 'number') {
          const v = ratio ? Math.round(ind.target * 1000) / 10 : ind.target;
          if (targets.indexOf(v) < 0) targets.push(v);
        }
      }
      targetMax = Math.max.apply(null, [0].concat(targets));
      if (targets.length) {
        series[0].markLine = {
          silent: true, symbol: 'none',
          lineStyle: { type: 'dashed', color: '#c62828', width: 1.5 },
          label: { position: 'insideEndTop', color: '#c62828', formatter: '{b}' },
          data: targets.map((v) => ({ yAxis: v, name: t('tr_target', (ratio ? '≥' : '≤') + fmtNumber(v) + (ratio ? '%' : '')) })),
        };
      }
    }
    const fmt = (v) => (v === null || v === undefined || v === '-' ? t('dash') : ratio ? v + '%' : String(v));
    const yAxis = ratio
      ? { type: 'value', min: 0, max: 100, axisLabel: { formatter: '{value}%' } }
      // Not a ratio (staffing: migrants per worker): its own plain axis, high enough to show the target.
      : { type: 'value', min: 0, minInterval: 1, max: (e) => niceCeil(Math.max(isFinite(e.max) ? e.max : 0, targetMax, 1) * 1.1) };
    chart.setOption({
      animation: false,
      textStyle: { fontFamily: CHART_FONT },
      color: TREND_COLORS,
      title: any ? { show: false } : { show: true, text: t('tr_no_data'), left: 'center', top: 'middle', textStyle: { color: '#8a939e', fontSize: 13, fontWeight: 'normal' } },
      grid: { left: 56, right: 40, top: single ? 56 : 64, bottom: 32 },
      tooltip: { trigger: 'axis', renderMode: 'richText', valueFormatter: fmt },
      legend: { type: 'scroll', top: 0, textStyle: { fontSize: 11 } },
      xAxis: { type: 'category', data: x, boundaryGap: false },
      yAxis,
      series,
    }, true);
  }

  // ---------------------------------------------------------------- cases

  const EXCHANGE_KINDS = ['notification', 'case_assist', 'first_child', 'certificate_mismatch'];

  function casesParams() {
    return {
      open: 'true',
      order: 'overdue_first',
      kind: S.cases.kind,
      counterpart: S.cases.counterpart,
      overdue: S.cases.overdueOnly ? 'true' : '',
      to: S.cases.direction === 'to_me' ? me() : '',
      from: S.cases.direction === 'from_me' ? me() : '',
      limit: 1000,
    };
  }

  function wdText(c) {
    if (c.state === 'closed') return t('dash');
    if (typeof c.working_days === 'number') {
      return c.working_days >= 0 ? t('wd_left', c.working_days) : t('wd_over', -c.working_days);
    }
    if (c.state === 'overdue' && typeof c.days === 'number') return t('days_over', c.days);
    return t('dash');
  }

  function stateText(c) {
    if (c.state === 'overdue') return t('st_overdue', c.days);
    if (c.state === 'closed') return c.on_time === false ? t('st_closed_late') : t('st_closed');
    return t('st_open');
  }

  async function loadCases(root, gen) {
    await ensureNames(S.who.counterparts || []);
    if (gen !== S.nav) return;
    const kindSel = h('select', { id: 'cases-kind' }, [h('option', { value: '', text: t('cs_all') })].concat(
      EXCHANGE_KINDS.map((k) => h('option', { value: k, text: tn('exchange', k) }))));
    kindSel.value = S.cases.kind;
    const cpSel = h('select', { id: 'cases-counterpart' }, [h('option', { value: '', text: t('cs_all') })].concat(
      (S.who.counterparts || []).map((c) => h('option', { value: String(c), text: placeText(c) }))));
    cpSel.value = S.cases.counterpart;
    const dirSel = h('select', { id: 'cases-direction' }, [
      h('option', { value: '', text: t('cs_dir_all') }),
      h('option', { value: 'to_me', text: t('cs_dir_to') }),
      h('option', { value: 'from_me', text: t('cs_dir_from') }),
    ]);
    dirSel.value = S.cases.direction;
    const overdue = h('input', { type: 'checkbox', id: 'cases-overdue-only', checked: S.cases.overdueOnly });
    const filters = h('div', { className: 'filters' }, [
      h('label', { htmlFor: 'cases-kind', text: t('cs_kind') }), kindSel,
      h('label', { htmlFor: 'cases-counterpart', text: t('cs_counterpart') }), cpSel,
      h('label', { htmlFor: 'cases-direction', text: t('cs_direction') }), dirSel,
      h('label', { className: 'check', htmlFor: 'cases-overdue-only' }, [overdue, ' ' + t('cs_overdue_only')]),
    ]);
    const onChange = () => {
      S.cases.kind = kindSel.value;
      S.cases.counterpart = cpSel.value;
      S.cases.direction = dirSel.value;
      S.cases.overdueOnly = overdue.checked;
      S.answer = null;
      refreshCases(gen);
    };
    for (const e of [kindSel, cpSel, dirSel, overdue]) e.addEventListener('change', onChange);

    pageHeader(root, t('cs_title'));
    root.appendChild(filters);
    root.appendChild(h('div', { id: 'answer-result', className: 'result-box', attrs: { role: 'status' }, hidden: true }));
    const panel = h('div', { className: 'panel' });
    panel.appendChild(h('div', { className: 'section-head' }, [
      h('span', { id: 'cases-total', className: 'muted' }),
      h('div', { id: 'cases-exports', className: 'section-tools' }),
    ]));
    panel.appendChild(table('cases-table', [t('col_type'), t('col_direction'), t('col_person'), t('col_opened'), t('col_due'), t('col_wd'), t('col_state'), t('col_action')], 'cases'));
    root.appendChild(panel);
    await fillCases(gen);
  }

  async function refreshCases(gen) {
    setReady('');
    clearPageError();
    try {
      await fillCases(gen);
    } catch (e) {
      showPageError(e);
    }
    if (gen === S.nav) setReady('cases');
  }

  async function fillCases(gen) {
    const params = casesParams();
    const ex = $('#cases-exports');
    if (ex) { clear(ex); ex.appendChild(exportButtons('cases', params)); }
    const { data, headers } = await api('GET', '/v1/cases?' + qs(params));
    if (gen !== S.nav) return;
    const codes = [];
    for (const c of Array.isArray(data) ? data : []) codes.push(c.from, c.to);
    await ensureNames(codes);
    if (gen !== S.nav) return;
    const mine = me();
    let rows = Array.isArray(data) ? data.slice() : [];
    // The server filters and orders; the same rules again here cost nothing.
    rows = rows.filter((c) => c.state !== 'closed');
    if (S.cases.kind) rows = rows.filter((c) => c.kind === S.cases.kind);
    if (S.cases.counterpart) rows = rows.filter((c) => String(c.from) === S.cases.counterpart || String(c.to) === S.cases.counterpart);
    if (S.cases.overdueOnly) rows = rows.filter((c) => c.state === 'overdue');
    if (S.cases.direction === 'to_me') rows = rows.filter((c) => String(c.to) === mine);
    if (S.cases.direction === 'from_me') rows = rows.filter((c) => String(c.from) === mine);
    const rank = (c) => (c.state === 'overdue' ? 0 : 1);
    rows = rows.map((c, i) => [c, i]).sort((a, b) => rank(a[0]) - rank(b[0]) || a[1] - b[1]).map((x) => x[0]);

    const total = headers.get('X-Total-Count');
    const totalEl = $('#cases-total');
    if (totalEl) {
      totalEl.textContent = t('total', total === null ? rows.length : total);
    }
    const tbl = $('#cases-table');
    if (!tbl) return;
    const tb = clear(tbl.tBodies[0]);
    const canAnswer = may('append');
    for (const c of rows) {
      const person = c.rel && c.rel.person ? String(c.rel.person) : '';
      const cls = c.state === 'overdue' ? 'overdue' : '';
      const typeCell = h('td', null, [tn('exchange', c.kind), c.urgent ? h('span', { className: 'badge badge-red', text: t('urgent') }) : null]);
      const action = h('td', { className: 'action' });
      if (canAnswer && String(c.to) === mine && c.state !== 'closed') {
        action.appendChild(h('button', {
          type: 'button', className: 'btn btn-small btn-primary answer', text: t('answer'),
          data: { request: c.request },
          on: { click: () => openAnswer(c) },
        }));
      }
      const tr = h('tr', { className: cls, data: { request: c.request, state: c.state, kind: c.kind } }, [
        typeCell,
        h('td', null, [place(c.from), ' → ', place(c.to)]),
        h('td', { className: 'mono', text: person.slice(0, 8), title: person }),
        h('td', { text: fmtInstant(c.opened) }),
        h('td', { text: c.due || t('dash') }),
        h('td', { className: c.state === 'overdue' ? 'bad' : '', text: wdText(c) }),
        h('td', { className: c.state === 'overdue' ? 'fail' : 'open', text: stateText(c) }),
        action,
      ]);
      tb.appendChild(tr);
    }
    if (!rows.length) emptyRow(tb, 8);
  }

  function field(label, input, name, hint) {
    const errId = name ? input.id + '-error' : null;
    const hintId = hint ? input.id + '-hint' : null;
    const described = [hintId, errId].filter((x) => x).join(' ');
    if (described) input.setAttribute('aria-describedby', described);
    return h('div', { className: 'field' }, [
      h('label', { text: label, htmlFor: input.id || undefined }),
      input,
      hint ? h('span', { className: 'field-hint', id: hintId, text: hint }) : null,
      name ? h('span', { className: 'field-error', id: errId, data: { for: name }, attrs: { 'aria-live': 'polite' } }) : null,
    ]);
  }

  function openAnswer(c) {
    const old = $('#answer-form');
    if (old) { const row = old.closest('tr'); if (row) row.remove(); }
    const mine = me();
    const rel = c.rel || {};
    if (!S.answer || S.answer.request !== c.request) S.answer = { request: c.request, id: uuidv7() };
    const form = h('form', { id: 'answer-form', className: 'answer-form', noValidate: true, data: { request: c.request, kind: c.kind } });
    form.appendChild(h('h3', { text: t('answer_title', tn('exchange', c.kind)) }));
    let build;
    if (c.kind === 'notification') {
      form.appendChild(h('p', { text: t('answer_receive_hint') }));
      build = () => ({ kind: 'NotificationReceived', body: {} });
    } else if (c.kind === 'case_assist') {
      const res = h('select', { id: 'answer-result-select', name: 'body.result' }, [
        'VERIFICATION_RESULT_CONFIRMED', 'VERIFICATION_RESULT_NOT_CONFIRMED',
        'VERIFICATION_RESULT_PERSON_UNKNOWN', 'VERIFICATION_RESULT_INCONCLUSIVE',
      ].map((v) => h('option', { value: v, text: tn('enums', v) })));
      const remarks = h('textarea', { id: 'answer-remarks', name: 'body.remarks', rows: 2, maxLength: 500, spellcheck: false });
      append(form, [field(t('ans_result'), res, 'body.result'), field(t('ans_remarks'), remarks, 'body.remarks', t('hint_no_personal'))]);
      build = () => {
        const body = { result: res.value };
        if (remarks.value.trim()) body.remarks = remarks.value.trim();
        return { kind: 'CaseAssistAnswered', body };
      };
    } else if (c.kind === 'first_child') {
      const sel = h('select', { id: 'answer-approved', name: 'body.approved' }, [
        h('option', { value: 'true', text: t('ans_approve') }),
        h('option', { value: 'false', text: t('ans_reject') }),
      ]);
      form.appendChild(field(t('ans_approved'), sel, 'body.approved'));
      build = () => ({ kind: 'FirstChildRegistrationConfirmed', body: { approved: sel.value === 'true' } });
    } else if (c.kind === 'certificate_mismatch') {
      const ref = h('input', { id: 'answer-cert-ref', name: 'body.certificateRef', type: 'text', maxLength: 64, autocomplete: 'off' });
      if (String(rel.origin) === mine) {
        const until = h('input', { id: 'answer-valid-until', name: 'body.validUntil', type: 'date', min: (S.who && S.who.today) || undefined });
        append(form, [h('p', { className: 'muted', text: t('ans_issue') }), field(t('ans_cert_ref'), ref, 'body.certificateRef'), field(t('ans_valid_until'), until, 'body.validUntil')]);
        build = () => {
          const errs = {};
          if (!ref.value.trim()) errs['body.certificateRef'] = t('v_required');
          if (!until.value) errs['body.validUntil'] = t('v_required');
          if (Object.keys(errs).length) return { errors: errs };
          const end = new Date(until.value + 'T23:59:59+08:00');
          return { kind: 'CertificateIssued', body: { certificateRef: ref.value.trim(), validUntil: end.toISOString().replace(/\.\d{3}Z$/, 'Z') } };
        };
      } else {
        append(form, [h('p', { className: 'muted', text: t('ans_submit_cert') }), field(t('ans_cert_ref'), ref, 'body.certificateRef')]);
        build = () => {
          if (!ref.value.trim()) return { errors: { 'body.certificateRef': t('v_required') } };
          return { kind: 'CertificateSubmitted', body: { certificateRef: ref.value.trim() } };
        };
      }
    } else {
      return;
    }
    const err = h('div', { id: 'answer-error', className: 'error-box', attrs: { role: 'alert' }, hidden: true });
    const submit = h('button', { type: 'submit', id: 'answer-submit', className: 'btn btn-primary', text: t('answer_submit') });
    const cancel = h('button', { type: 'button', className: 'btn', text: t('answer_cancel') });
    append(form, [err, h('div', { className: 'form-actions' }, [submit, cancel])]);
    const close = () => {
      S.answer = null;
      const row = form.closest('tr');
      if (row) row.remove();
      // Back to the row's answer button.
      const b = document.querySelector('#cases-table button.answer[data-request="' + cssEscape(c.request) + '"]');
      if (b) b.focus();
    };
    cancel.addEventListener('click', close);
    form.addEventListener('keydown', (ev) => { if (ev.key === 'Escape') { ev.preventDefault(); close(); } });
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      for (const e of $$('.field-error', form)) e.textContent = '';
      for (const e of $$('.invalid', form)) { e.classList.remove('invalid'); e.removeAttribute('aria-invalid'); }
      err.hidden = true;
      const built = build();
      if (built.errors) {
        let first = null;
        for (const k of Object.keys(built.errors)) {
          const fe = $('.field-error[data-for="' + cssEscape(k) + '"]', form);
          if (fe) fe.textContent = built.errors[k];
          const inp = form.elements.namedItem(k);
          if (inp) { inp.classList.add('invalid'); inp.setAttribute('aria-invalid', 'true'); if (!first) first = inp; }
        }
        if (first) first.focus();
        return;
      }
      const event = {
        id: S.answer.id,
        kind: built.kind,
        causation: c.request,
        person: rel.person,
        origin: rel.origin,
        residence: rel.residence,
        occurred_at: cnNowRfc3339(),
        body: built.body,
      };
      const gen = S.nav;
      submit.disabled = true;
      setReady('');
      try {
        const { data } = await api('POST', '/v1/events', event);
        S.answer = null;
        const box = $('#answer-result');
        if (box) {
          box.textContent = t('answer_done', tn('events', built.kind), data && data.seq !== undefined ? data.seq : '?');
          box.hidden = false;
        }
        await fillCases(gen);
        // The form is gone with the refreshed rows: the focus goes to the confirmation.
        if (box && gen === S.nav) { box.tabIndex = -1; box.focus(); }
      } catch (e) {
        if (e instanceof SignedOut) return;
        if (e.status === 409) S.answer.id = uuidv7();
        err.textContent = t('error_prefix') + e.message;
        err.hidden = false;
        submit.disabled = false;
      }
      if (gen === S.nav) setReady('cases');
    });
    const tr = document.querySelector('#cases-table tr[data-request="' + cssEscape(c.request) + '"]');
    const row = h('tr', { className: 'answer-row', data: { for: c.request } }, h('td', { attrs: { colspan: 8 } }, form));
    if (tr && tr.parentNode) tr.parentNode.insertBefore(row, tr.nextSibling);
    else { const tb = $('#cases-table tbody'); if (tb) tb.appendChild(row); }
    const first = form.querySelector('select, input, textarea, button');
    if (first) first.focus();
  }

  function cssEscape(s) {
    return window.CSS && CSS.escape ? CSS.escape(String(s)) : String(s).replace(/[^a-zA-Z0-9_-]/g, '');
  }

  // ---------------------------------------------------------------- person

  const ID_WEIGHTS = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
  const ID_CHECK = '10X98765432';

  /** 'ok' | 'shape' | 'check' for a resident ID number (GB 11643). */
  function checkIdNumber(v) {
    const s = String(v || '').trim().toUpperCase();
    if (!/^\d{17}[\dX]$/.test(s)) return 'shape';
    let sum = 0;
    for (let i = 0; i < 17; i++) sum += (s.charCodeAt(i) - 48) * ID_WEIGHTS[i];
    return ID_CHECK[sum % 11] === s[17] ? 'ok' : 'check';
  }

  async function loadPerson(root, gen) {
    pageHeader(root, t('ps_title'));
    const idInput = h('input', { id: 'person-id-number', type: 'text', maxLength: 18, autocomplete: 'off', spellcheck: false, className: 'w-id' });
    const keyInput = h('input', { id: 'person-key', type: 'text', maxLength: 32, autocomplete: 'off', spellcheck: false, className: 'w-key mono' });
    if (S.person) keyInput.value = S.person;
    const btn = h('button', { type: 'submit', id: 'person-lookup', className: 'btn btn-primary', text: t('ps_lookup') });
    const msg = h('div', { id: 'person-message', className: 'muted' });
    // Only a role that sees identities may turn an ID number into a person key
    // (for the others it would re-identify pseudonymous data); they look up by key.
    const byId = (S.who.tiers || []).indexOf('identity') >= 0;
    const form = h('form', { id: 'person-form', className: 'filters', noValidate: true, autocomplete: 'off' }, (byId ? [
      h('label', { htmlFor: 'person-id-number', text: t('ps_id_number') }), idInput,
      h('span', { className: 'muted', text: t('ps_or') }),
    ] : []).concat([
      h('label', { htmlFor: 'person-key', text: t('ps_key') }), keyInput,
      btn,
    ]));
    root.appendChild(form);
    root.appendChild(msg);
    const out = h('div', { id: 'person-out' });
    root.appendChild(out);
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const idv = idInput.value.trim();
      const keyv = keyInput.value.trim().toLowerCase();
      // The ID number leaves the field at once, whatever happens next.
      idInput.value = '';
      msg.textContent = '';
      msg.className = 'muted';
      if (!idv && !keyv) { msg.textContent = t('ps_need_input'); msg.className = 'error-text'; return; }
      setReady('');
      clearPageError();
      btn.disabled = true;
      try {
        let key = keyv;
        if (idv) {
          const chk = checkIdNumber(idv);
          if (chk === 'shape') throw new Error(t('v_id_shape'));
          if (chk === 'check') msg.textContent = t('ps_checkdigit_warn');
          const { data } = await api('POST', '/v1/person-key', { id_number: idv.toUpperCase() });
          key = String(data.person || '');
          if (chk === 'ok' && Array.isArray(data.warnings) && data.warnings.length) msg.textContent = t('ps_checkdigit_warn');
        } else if (!/^[0-9a-f]{32}$/.test(key)) {
          throw new Error(t('ps_key_bad'));
        }
        S.person = key;
        S.reveal = false;
        keyInput.value = key;
        if (gen !== S.nav) return;
        await renderPerson(out, gen);
      } catch (e) {
        showPageError(e);
      } finally {
        btn.disabled = false;
      }
      if (gen === S.nav) setReady('person');
    });
    if (S.person) await renderPerson(out, gen);
  }

  async function renderPerson(out, gen) {
    const key = S.person;
    const showTimeline = may('read_events');
    const showDisclosures = may('read_disclosures');
    const calls = [get('/v1/cards/' + encodeURIComponent(key))];
    if (showTimeline) calls.push(get('/v1/events?' + qs({ person: key, reveal: S.reveal ? 'true' : '' })));
    // The disclosure log: loaded with the rest; its failure is shown in its own panel.
    const dIdx = showDisclosures ? calls.push(get('/v1/disclosures?' + qs({ person: key }))) - 1 : -1;
    const eIdx = showDisclosures ? calls.push(get('/v1/erasures?' + qs({ person: key }))) - 1 : -1;
    const res = await Promise.allSettled(calls);
    if (gen !== S.nav) return;
    const codes = [];
    if (res[0].status === 'fulfilled' && Array.isArray(res[0].value)) {
      for (const card of res[0].value) {
        if (card && card.rel) codes.push(card.rel.origin, card.rel.residence);
        for (const f of (card && Array.isArray(card.quality)) ? card.quality : []) if (f) codes.push(f.author);
      }
    }
    // The cards' data-quality flags mark their events in the timeline (also when shown again unmasked).
    S.personFlags = flagsByEvent(res[0].status === 'fulfilled' ? res[0].value : []);
    if (showTimeline && res[1].status === 'fulfilled') codes.push(...codesOfEvents(res[1].value));
    if (dIdx >= 0 && res[dIdx].status === 'fulfilled') codes.push(...codesOfDisclosures(res[dIdx].value));
    if (eIdx >= 0 && res[eIdx].status === 'fulfilled') codes.push(...codesOfErasures(res[eIdx].value));
    await ensureNames(codes);
    if (gen !== S.nav) return;
    clear(out);
    if (res.some((r) => r.status === 'rejected' && r.reason instanceof SignedOut)) return;
    const errors = res.filter((r, i) => r.status === 'rejected' && i !== dIdx && i !== eIdx).map((r) => r.reason);
    out.appendChild(h('p', { className: 'person-key', text: t('ps_person', key) }));

    const cardsPanel = h('div', { id: 'cards', className: 'panel' });
    cardsPanel.appendChild(sectionHead(t('ps_cards'), exportButtons('card', { person: key })));
    if (res[0].status === 'fulfilled') {
      const cards = Array.isArray(res[0].value) ? res[0].value : [];
      if (!cards.length) cardsPanel.appendChild(h('p', { className: 'muted', text: t('ps_no_cards') }));
      for (const card of cards) cardsPanel.appendChild(renderCard(card));
    }
    out.appendChild(cardsPanel);

    if (showTimeline) {
      const tl = h('div', { id: 'timeline-panel', className: 'panel' });
      const tools = [];
      if (hasTier('identity')) {
        const cb = h('input', { type: 'checkbox', id: 'reveal', checked: S.reveal });
        cb.addEventListener('change', async () => {
          S.reveal = cb.checked;
          setReady('');
          clearPageError();
          try {
            const evs = await get('/v1/events?' + qs({ person: key, reveal: S.reveal ? 'true' : '' }));
            if (gen !== S.nav) return;
            await ensureNames(codesOfEvents(evs));
            if (gen !== S.nav) return;
            fillTimeline(evs);
            const ex = $('#timeline-exports');
            if (ex) { clear(ex); ex.appendChild(exportButtons('timeline', { person: key })); }
          } catch (e) {
            showPageError(e);
          }
          // Showing the timeline again was itself a release: the log is read after it.
          if (showDisclosures && gen === S.nav) {
            try {
              const d = await get('/v1/disclosures?' + qs({ person: key }));
              await ensureNames(codesOfDisclosures(d));
              if (gen === S.nav) fillDisclosures(d);
            } catch (e) {
              if (e instanceof SignedOut) return;
              if (gen === S.nav) disclosuresFailed(e);
            }
          }
          if (gen === S.nav) setReady('person');
        });
        tools.push(h('label', { className: 'check reveal', htmlFor: 'reveal' }, [cb, ' ' + t('ps_reveal')]));
      }
      tools.push(h('span', { id: 'timeline-exports' }, exportButtons('timeline', { person: key })));
      tl.appendChild(sectionHead(t('ps_timeline'), tools));
      tl.appendChild(table('timeline', [t('col_when'), t('col_author'), t('col_event'), t('col_rel'), t('col_detail')], 'timeline'));
      out.appendChild(tl);
      if (res[1].status === 'fulfilled') fillTimeline(res[1].value);
    }
    if (showDisclosures) {
      out.appendChild(disclosuresPanel());
      if (res[dIdx].status === 'fulfilled') fillDisclosures(res[dIdx].value);
      else disclosuresFailed(res[dIdx].reason);
      out.appendChild(erasuresPanel(key, may('erase')));
      if (res[eIdx].status === 'fulfilled') fillErasures(res[eIdx].value);
      else erasuresFailed(res[eIdx].reason);
    }
    if (errors.length) showPageError(errors[0]);
  }

  // ---------------------------------------------------------------- disclosure log

  /** Rows shown of one person's disclosure log (the newest first). */
  const DISCLOSURES_SHOWN = 500;

  /** A role name of the dictionary, or the role as given; '—' for none (a locality). */
  function roleName(role) {
    return role ? tn('roles', String(role)) : t('dash');
  }

  /** A disclosure's recipient: a locality code (with its name), `downstream:<role>`, `token:<id>` or `cert:<name>`. */
  function recipientText(r) {
    const s = String(r || '');
    const m = /^(downstream|token|cert|certificate|cli):(.*)$/.exec(s);
    if (!m) return s ? [place(s), s === me() ? t('local_suffix') : null] : t('dash');
    if (m[1] === 'downstream') return t('dc_rcpt_downstream', roleName(m[2]));
    if (m[1] === 'cli') return t('dc_rcpt_cli', m[2]);
    return t(m[1] === 'token' ? 'dc_rcpt_token' : 'dc_rcpt_cert', m[2]);
  }

  /** An author locality with its name, "（本地）" when it is this one, and the sequence number. */
  function authorCell(author, seq) {
    const a = String(author || '');
    return [a ? place(a) : null, a === me() ? t('local_suffix') : null, seq !== undefined && seq !== null ? ' #' + seq : null];
  }

  function channelText(c) {
    return tn('dc_channels', String(c || ''));
  }

  function tiersText(tiers) {
    return (Array.isArray(tiers) ? tiers : []).map((x) => tn('dc_tiers', String(x))).join(t('list_sep')) || t('dash');
  }

  /** Error text of a failed disclosure call (a node without the log answers 404). */
  function disclosureError(e) {
    return e && e.status === 404 ? t('dc_unavailable') : t('dc_failed', e && e.message ? e.message : String(e));
  }

  /** The person page's panel: who received this person's data (filled by fillDisclosures). */
  function disclosuresPanel() {
    const panel = h('div', { id: 'disclosures-panel', className: 'panel', data: { state: 'loading' } });
    panel.appendChild(sectionHead(t('dc_title')));
    panel.appendChild(h('p', { id: 'disclosures-note', className: 'muted small dc-note', text: t('dc_note') }));
    panel.appendChild(h('p', { id: 'disclosures-limited', className: 'muted small', hidden: true }));
    panel.appendChild(h('div', { id: 'disclosures-error', className: 'error-text', attrs: { role: 'alert' }, hidden: true }));
    const cols = [t('col_time'), t('col_dc_channel'), t('col_dc_recipient'), t('col_dc_role'), t('col_dc_tiers'),
      t('col_dc_masked'), t('col_dc_event'), t('col_dc_basis')];
    panel.appendChild(h('div', { className: 'scroll-x' }, table('disclosures-table', cols, 'disclosures')));
    return panel;
  }

  function fillDisclosures(data) {
    const tbl = $('#disclosures-table');
    if (!tbl) return;
    const panel = $('#disclosures-panel');
    const err = $('#disclosures-error');
    if (err) { err.textContent = ''; err.hidden = true; }
    tbl.hidden = false;
    const tb = clear(tbl.tBodies[0]);
    const all = data && Array.isArray(data.entries) ? data.entries.slice() : [];
    all.sort((a, b) => (Number(b.n) || 0) - (Number(a.n) || 0));
    const list = all.slice(0, DISCLOSURES_SHOWN);
    for (const d of list) {
      const author = String(d.author || '');
      const masked = d.masked === true;
      tb.appendChild(h('tr', { data: { n: d.n, channel: d.channel, recipient: d.recipient, masked: masked ? 'true' : 'false' } }, [
        h('td', { className: 'nowrap', text: fmtInstant(d.at) }),
        h('td', { className: 'nowrap', text: channelText(d.channel) }),
        h('td', { className: 'nowrap', title: String(d.recipient || '') }, recipientText(d.recipient)),
        h('td', { className: 'nowrap', text: roleName(d.role) }),
        h('td', { className: 'nowrap', text: tiersText(d.tiers) }),
        h('td', { className: 'nowrap ' + (masked ? 'dc-masked' : 'dc-full'), text: masked ? t('dc_masked') : t('dc_full') }),
        h('td', { className: 'nowrap', title: d.event ? String(d.event) : undefined }, authorCell(author, d.seq)),
        h('td', { className: 'basis', text: d.basis ? String(d.basis) : t('dash') }),
      ]));
    }
    if (!list.length) emptyRow(tb, 8);
    const limited = $('#disclosures-limited');
    if (limited) {
      limited.textContent = all.length > list.length ? t('dc_limited', list.length, all.length) : '';
      limited.hidden = all.length <= list.length;
    }
    if (panel) { panel.dataset.state = 'ok'; panel.dataset.count = String(all.length); }
  }

  function disclosuresFailed(e) {
    const panel = $('#disclosures-panel');
    const err = $('#disclosures-error');
    const tbl = $('#disclosures-table');
    if (tbl) { clear(tbl.tBodies[0]); tbl.hidden = true; }
    const limited = $('#disclosures-limited');
    if (limited) limited.hidden = true;
    if (err) { err.textContent = disclosureError(e); err.hidden = false; }
    if (panel) { panel.dataset.state = e && e.status === 404 ? 'unavailable' : 'error'; delete panel.dataset.count; }
  }

  // ---------------------------------------------------------------- erasure

  function codesOfErasures(data) {
    const out = [];
    for (const e of (data && Array.isArray(data.erasures)) ? data.erasures : []) {
      out.push(e.author);
      for (const a of Array.isArray(e.answers) ? e.answers : []) out.push(a.locality);
    }
    return out.filter(Boolean);
  }

  /** The person page's erasure panel: requests about this person and, for roles that may, the form. */
  function erasuresPanel(key, canErase) {
    const panel = h('div', { id: 'erasures-panel', className: 'panel', data: { state: 'loading' } });
    panel.appendChild(sectionHead(t('er_title')));
    panel.appendChild(h('p', { className: 'muted small', text: t('er_note') }));
    panel.appendChild(h('div', { id: 'erasures-error', className: 'error-text', attrs: { role: 'alert' }, hidden: true }));
    const cols = [t('col_time'), t('er_col_direction'), t('er_col_author'), t('col_dc_tiers'), t('er_col_basis'),
      t('er_col_reference'), t('er_col_due'), t('er_col_answers')];
    panel.appendChild(h('div', { className: 'scroll-x' }, table('erasures-table', cols, 'erasures')));
    if (canErase) panel.appendChild(eraseForm(key));
    return panel;
  }

  function answerText(a) {
    if (a.state === 'confirmed') return t('er_confirmed');
    if (a.state === 'overdue') return t('er_overdue', a.overdue_days);
    return t('er_open');
  }

  function fillErasures(data) {
    const tbl = $('#erasures-table');
    if (!tbl) return;
    const err = $('#erasures-error');
    if (err) { err.textContent = ''; err.hidden = true; }
    tbl.hidden = false;
    const tb = clear(tbl.tBodies[0]);
    const list = data && Array.isArray(data.erasures) ? data.erasures.slice().reverse() : [];
    for (const e of list) {
      const answers = (Array.isArray(e.answers) ? e.answers : []).map((a) =>
        h('div', { className: 'er-answer er-' + String(a.state || ''), data: { locality: a.locality, state: a.state } },
          [place(String(a.locality || '')), ' ', answerText(a)]));
      tb.appendChild(h('tr', { data: { id: e.id, direction: e.direction, complete: e.complete ? 'true' : 'false' } }, [
        h('td', { className: 'nowrap', text: fmtInstant(e.recorded_at) }),
        h('td', { className: 'nowrap', text: e.direction === 'sent' ? t('er_sent') : t('er_received') }),
        h('td', { className: 'nowrap' }, authorCell(e.author)),
        h('td', { className: 'nowrap', text: tiersText(e.tiers) }),
        h('td', { className: 'nowrap', text: tn('er_bases', String(e.basis || '')) }),
        h('td', { className: 'nowrap', text: e.reference ? String(e.reference) : t('dash') }),
        h('td', { className: 'nowrap', text: fmtInstant(e.answer_by) }),
        h('td', {}, answers),
      ]));
    }
    if (!list.length) emptyRow(tb, 8, t('er_none'));
    const panel = $('#erasures-panel');
    if (panel) { panel.dataset.state = 'ok'; panel.dataset.count = String(list.length); }
  }

  function erasuresFailed(e) {
    const err = $('#erasures-error');
    const tbl = $('#erasures-table');
    if (tbl) { clear(tbl.tBodies[0]); tbl.hidden = true; }
    if (err) { err.textContent = e && e.status === 404 ? t('dc_unavailable') : t('er_failed', e && e.message ? e.message : String(e)); err.hidden = false; }
    const panel = $('#erasures-panel');
    if (panel) panel.dataset.state = 'error';
  }

  /** The erasure form (supervisor, admin): tiers, basis, case number; asks before it acts. */
  function eraseForm(key) {
    const form = h('form', { id: 'erase-form', className: 'erase-form', attrs: { novalidate: true } });
    form.appendChild(h('h4', { text: t('er_form_title') }));
    const tierBoxes = ['identity', 'contact', 'health'].map((tier) => {
      const cb = h('input', { type: 'checkbox', id: 'erase-tier-' + tier, value: tier, checked: true });
      return h('label', { className: 'check', htmlFor: cb.id }, [cb, ' ' + tn('dc_tiers', tier)]);
    });
    form.appendChild(h('fieldset', {}, [h('legend', { text: t('er_form_tiers') }), ...tierBoxes]));
    const basis = h('select', { id: 'erase-basis' }, Object.keys(I18N.zh.er_bases).map((b) =>
      h('option', { value: b.replace('ERASURE_BASIS_', '').toLowerCase(), text: tn('er_bases', b) })));
    form.appendChild(h('label', { htmlFor: 'erase-basis' }, [t('er_form_basis'), ' ', basis]));
    const ref = h('input', { id: 'erase-reference', type: 'text', maxLength: 64, autocomplete: 'off' });
    form.appendChild(h('label', { htmlFor: 'erase-reference' }, [t('er_form_reference'), ' ', ref]));
    const btn = h('button', { type: 'submit', id: 'erase-submit', className: 'danger', text: t('er_form_submit') });
    const msg = h('p', { id: 'erase-message', className: 'small', attrs: { role: 'status' } });
    form.appendChild(btn);
    form.appendChild(msg);
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const tiers = Array.from(form.querySelectorAll('input[type=checkbox]:checked')).map((c) => c.value);
      if (!tiers.length) { msg.textContent = t('er_need_tier'); msg.className = 'error-text'; return; }
      if (!window.confirm(t('er_confirm'))) return;
      btn.disabled = true;
      msg.textContent = '';
      try {
        const { data } = await api('POST', '/v1/erasures', { person: key, tiers, basis: basis.value, reference: ref.value.trim() });
        const to = [];
        for (const r of Array.isArray(data.requests) ? data.requests : []) for (const l of r.recipients || []) to.push(placeText(l));
        msg.textContent = t('er_done', data.erased ? data.erased.payloads : 0, to.join(t('list_sep')) || t('dash'));
        msg.className = 'ok-text';
        // The recipients' receipts arrive over replication: refresh until all are in (or a minute passed).
        for (let i = 0; i < 30 && $('#erase-form') === form; i++) {
          const list = await get('/v1/erasures?' + qs({ person: key }));
          fillErasures(list);
          const sent = (Array.isArray(list.erasures) ? list.erasures : []).filter((x) => x.direction === 'sent');
          if (sent.length && sent.every((x) => x.complete)) break;
          await new Promise((r) => setTimeout(r, 2000));
        }
      } catch (e) {
        if (e instanceof SignedOut) return;
        msg.textContent = t('er_failed', e && e.message ? e.message : String(e));
        msg.className = 'error-text';
      } finally {
        btn.disabled = false;
      }
    });
    return form;
  }

  function itemStateText(it) {
    if (it.state === 'done') return it.on_time === false ? t('item_done_late') : t('item_done');
    if (it.state === 'overdue') return t('item_overdue', it.days);
    return t('item_pending');
  }

  function renderCard(card) {
    const rel = card.rel || {};
    const box = h('div', { className: 'card', data: { origin: rel.origin, residence: rel.residence, person: rel.person } });
    box.appendChild(h('h3', null, tx('ps_card_title', place(rel.origin), place(rel.residence))));
    box.appendChild(h('p', { className: 'muted small' }, [
      t('ps_anchor', fmtInstant(card.anchor)), ' · ',
      t('ps_catalogue', card.catalogue_origin || t('dash'), card.catalogue_residence || t('dash')), ' · ',
      t('ov_as_of', fmtInstant(card.as_of)),
    ]));
    const quality = cardQuality(card.quality);
    if (quality) box.appendChild(quality);
    const tbl = table(null, [t('col_item'), t('col_side'), t('col_due'), t('col_state'), t('col_done_at')], 'card-items');
    const tb = tbl.tBodies[0];
    for (const it of card.items || []) {
      const cls = it.state === 'overdue' ? 'overdue' : it.state === 'done' ? (it.on_time === false ? 'late' : 'done') : 'pending';
      const stateCls = it.state === 'overdue' ? 'fail' : it.state === 'done' ? (it.on_time === false ? 'warn' : 'pass') : 'na';
      tb.appendChild(h('tr', { className: cls, data: { item: it.id, state: it.state } }, [
        h('td', { className: 'name', text: (S.lang === 'en' ? it.name_en : it.name_zh) || it.name_zh || it.id }),
        h('td', { text: it.side === 'origin' ? t('side_origin') : it.side === 'residence' ? t('side_residence') : String(it.side || '') }),
        h('td', { text: it.due || t('dash') }),
        h('td', { className: stateCls, text: itemStateText(it) }),
        h('td', { text: it.state === 'done' ? fmtInstant(it.at) : '' }),
      ]));
    }
    if (!tb.rows.length) emptyRow(tb, 5);
    box.appendChild(tbl);
    return box;
  }

  function fmtBodyValue(k, v, depth) {
    if (v === null || v === undefined) return t('dash');
    if (typeof v === 'boolean') return v ? t('yes') : t('no');
    if (typeof v === 'string') {
      if (/^[A-Z][A-Z0-9_]+$/.test(v)) return tn('enums', v);
      if ((k === 'validUntil' || /At$/.test(k)) && /^\d{4}-\d{2}-\d{2}T/.test(v)) return fmtInstant(v);
      if (k === 'kind' && tn('events', v) !== v) return tn('events', v);
      return v;
    }
    if (typeof v === 'number') return String(v);
    if (Array.isArray(v)) return t('n_items', v.length);
    if (typeof v === 'object' && (depth || 0) < 3) {
      // A nested body (a correction's replacement): "label: value, …" in brackets.
      const parts = Object.keys(v).map((kk) => fieldName(kk) + t('colon') + fmtBodyValue(kk, v[kk], (depth || 0) + 1));
      return '(' + parts.join(t('list_sep')) + ')';
    }
    return JSON.stringify(v);
  }

  /** The label of a body or tier field (`tier` picks tier-specific names, e.g. the contact channel). */
  function fieldName(k, tier) {
    const d = I18N[S.lang] || I18N.zh;
    const tk = tier ? tier + '.' + k : null;
    if (tk && d.fields[tk] !== undefined) return d.fields[tk];
    if (d.fields[k] !== undefined) return d.fields[k];
    return k;
  }

  /** Body fields holding a division code (shown with its name). */
  const CODE_FIELDS = ['township', 'destination'];

  function kvList(obj, cls, tier) {
    const parts = [];
    for (const k of Object.keys(obj || {})) {
      const code = !tier && CODE_FIELDS.indexOf(k) >= 0 ? divisionCode(obj[k]) : '';
      const v = code ? h('span', { className: 'v' }, place(code)) : h('span', { className: 'v', text: fmtBodyValue(k, obj[k]) });
      parts.push(h('span', { className: 'kv ' + (cls || '') }, [h('span', { className: 'k', text: fieldName(k, tier) + t('colon') }), v]));
    }
    return parts;
  }

  function fillTimeline(events) {
    const tbl = $('#timeline');
    if (!tbl) return;
    const tb = clear(tbl.tBodies[0]);
    const list = Array.isArray(events) ? events.slice() : [];
    list.sort((a, b) => String(a.occurred_at).localeCompare(String(b.occurred_at)) || String(a.recorded_at).localeCompare(String(b.recorded_at)));
    for (const ev of list) {
      const detail = h('td', { className: 'detail' });
      append(detail, kvList(ev.body));
      if (ev.causation) detail.appendChild(h('span', { className: 'kv muted', text: t('answers_to', String(ev.causation).slice(0, 8)) }));
      for (const tier of ['identity', 'contact', 'health']) {
        // Only tiers the role holds (the node strips the others already).
        if (!ev[tier] || !hasTier(tier)) continue;
        const content = typeof ev[tier] === 'object' ? kvList(ev[tier], 'personal', tier)
          : [h('span', { className: 'kv personal', text: String(ev[tier]) })]; // a masked health tier is a string
        detail.appendChild(h('div', { className: 'tier tier-' + tier }, [h('span', { className: 'tier-name', text: tn('tiers', tier) })].concat(content)));
      }
      if (Array.isArray(ev.tiers_withheld) && ev.tiers_withheld.length) {
        detail.appendChild(h('div', { className: 'muted small withheld', text: t('withheld', ev.tiers_withheld.map((x) => tn('tiers', String(x))).join(t('list_sep'))) }));
      }
      const author = String(ev.author || '');
      const flags = S.personFlags.get(String(ev.id)) || [];
      const badge = flags.length ? h('span', {
        className: 'badge quality-badge', text: t('q_badge'),
        title: flags.map(qualityMessage).join('\n'), data: { code: flags.map((f) => f.code).join(' ') },
      }) : null;
      tb.appendChild(h('tr', { className: flags.length ? 'flagged' : undefined, data: { event: ev.id, kind: ev.kind } }, [
        h('td', { className: 'nowrap', text: fmtInstant(ev.occurred_at), title: t('col_recorded') + ' ' + fmtInstant(ev.recorded_at) }),
        h('td', { className: 'nowrap' }, authorCell(author, ev.seq)),
        h('td', { className: 'nowrap' }, [tn('events', ev.kind), badge]),
        h('td', { className: 'nowrap' }, [place(ev.origin || ''), ' → ', place(ev.residence || '')]),
        detail,
      ]));
    }
    if (!list.length) emptyRow(tb, 5, t('ps_no_events'));
  }

  // ---------------------------------------------------------------- record

  const ENUM_OPTIONS = {
    channel: ['REGISTRATION_CHANNEL_SERVICE_DESK', 'REGISTRATION_CHANNEL_RENTAL_HOUSING', 'REGISTRATION_CHANNEL_EMPLOYER',
      'REGISTRATION_CHANNEL_JOB_MARKET', 'REGISTRATION_CHANNEL_RESIDENCE_PERMIT', 'REGISTRATION_CHANNEL_ORIGIN_NOTICE'],
    reason: ['MISMATCH_REASON_EXPIRED', 'MISMATCH_REASON_FACTS_DIFFER', 'MISMATCH_REASON_NOT_ISSUED_BY_ORIGIN', 'MISMATCH_REASON_OTHER'],
    service: ['SERVICE_KIND_CONTRACEPTIVES', 'SERVICE_KIND_PRE_PREGNANCY_CHECK', 'SERVICE_KIND_PREGNANCY_CHECK',
      'SERVICE_KIND_REPRODUCTIVE_HEALTH_CHECK', 'SERVICE_KIND_ULTRASOUND_REGISTRATION', 'SERVICE_KIND_SURGERY_REGISTRATION',
      'SERVICE_KIND_CARE_VISIT', 'SERVICE_KIND_PERSON_INFORMED'],
    agreement: ['AGREEMENT_KIND_PLEDGE', 'AGREEMENT_KIND_SERVICE_AGREEMENT'],
    topic: ['NOTIFICATION_TOPIC_REGISTRATION', 'NOTIFICATION_TOPIC_SERVICES', 'NOTIFICATION_TOPIC_CONTRACEPTION',
      'NOTIFICATION_TOPIC_CONTACT_CHANNEL', 'NOTIFICATION_TOPIC_CERTIFICATE', 'NOTIFICATION_TOPIC_FIRST_CHILD',
      'NOTIFICATION_TOPIC_OTHER'],
    urgency: ['URGENCY_NORMAL', 'URGENCY_URGENT'],
    sex: ['SEX_FEMALE', 'SEX_MALE'],
    marital: ['MARITAL_STATUS_MARRIED', 'MARITAL_STATUS_NOT_MARRIED'],
    outreach: ['OUTREACH_KIND_LECTURE', 'OUTREACH_KIND_CAMPAIGN', 'OUTREACH_KIND_MATERIALS', 'OUTREACH_KIND_POSTERS',
      'OUTREACH_KIND_CONSULTATION'],
    venue: ['VENUE_CONSTRUCTION_SITE', 'VENUE_MARKET', 'VENUE_STATION', 'VENUE_TOURIST_AREA', 'VENUE_COMMUNITY',
      'VENUE_ENTERPRISE', 'VENUE_SERVICE_HALL', 'VENUE_OTHER'],
    mode: ['DISTRIBUTION_MODE_STAFFED', 'DISTRIBUTION_MODE_SELF_SERVICE', 'DISTRIBUTION_MODE_DELEGATED',
      'DISTRIBUTION_MODE_DELIVERY', 'DISTRIBUTION_MODE_CARD_OR_ONLINE'],
    active: ['active_true', 'active_false'],
  };

  // Field specs: name (JSON path), type, required, check.
  const F = {
    person: { name: 'person_id_number', type: 'id', required: true },
    certificateRef: { name: 'body.certificateRef', type: 'text', required: true, max: 64 },
  };
  // sides: which sides may author the kind ('residence' only, or both); `locality`:
  // a locality-level record (no person, no origin or residence).
  const RECORD_KINDS = {
    ArrivalRegistered: {
      sides: ['residence'],
      fields: [
        { name: 'identity.name', type: 'text', required: true, max: 64, personal: true },
        { name: 'identity.idNumber', type: 'id', required: true },
        { name: 'contact.phone', type: 'phone', required: false },
        { name: 'body.channel', type: 'enum', options: 'channel', required: true },
        { name: 'body.township', type: 'township', required: false },
        { name: 'body.community', type: 'community', required: false },
        { name: 'body.expectedStayMonths', type: 'int', required: false },
        { name: 'body.sex', type: 'enum', options: 'sex', required: false },
        { name: 'body.birthYear', type: 'year', required: false, women: true },
        { name: 'body.maritalStatus', type: 'enum', options: 'marital', required: false, women: true },
      ],
    },
    CertificateVerified: {
      sides: ['residence'],
      fields: [F.person, F.certificateRef, { name: 'body.maritalStatus', type: 'enum', options: 'marital', required: false }],
    },
    CertificateMismatchFound: {
      sides: ['residence'],
      fields: [F.person, F.certificateRef, { name: 'body.reason', type: 'enum', options: 'reason', required: true }],
    },
    ServiceRendered: {
      sides: ['residence', 'origin'],
      fields: [F.person, { name: 'body.service', type: 'enum', options: 'service', required: true },
        { name: 'body.providerRef', type: 'text', required: false, max: 64 }],
    },
    AgreementSigned: {
      sides: ['residence', 'origin'],
      fields: [F.person, { name: 'body.agreement', type: 'enum', options: 'agreement', required: true },
        { name: 'body.agreementRef', type: 'text', required: true, max: 64 }],
    },
    NotificationSent: {
      sides: ['residence', 'origin'],
      fields: [F.person, { name: 'body.topic', type: 'enum', options: 'topic', required: true }],
    },
    CaseAssistRequested: {
      sides: ['residence', 'origin'],
      fields: [F.person, { name: 'body.urgency', type: 'enum', options: 'urgency', required: true },
        { name: 'body.subject', type: 'text', required: true, max: 200, free: true }],
    },
    DepartureRegistered: {
      sides: ['residence', 'origin'],
      fields: [F.person, { name: 'body.destination', type: 'code6', required: false }],
    },
    OutreachActivityHeld: {
      locality: true,
      fields: [{ name: 'body.activity', type: 'enum', options: 'outreach', required: true },
        { name: 'body.venue', type: 'enum', options: 'venue', required: false },
        { name: 'body.township', type: 'township', required: true },
        { name: 'body.attendance', type: 'int', required: false },
        { name: 'body.materials', type: 'int', required: false }],
    },
    DistributionPointReported: {
      locality: true,
      fields: [{ name: 'body.pointRef', type: 'text', required: true, max: 64, free: true },
        { name: 'body.mode', type: 'enum', options: 'mode', required: true },
        { name: 'body.venue', type: 'enum', options: 'venue', required: false },
        { name: 'body.township', type: 'township', required: true },
        { name: 'body.active', type: 'enum', options: 'active', required: true },
        { name: 'body.unitsDistributed', type: 'int', required: false }],
    },
    SatisfactionSurveyed: {
      locality: true,
      fields: [{ name: 'body.surveyRef', type: 'text', required: true, max: 64, free: true },
        { name: 'body.township', type: 'township', required: false },
        { name: 'body.respondents', type: 'int', required: true },
        { name: 'body.satisfied', type: 'int', required: true }],
    },
  };

  function fieldLabel(name) {
    return t('f_' + name.replace(/\./g, '_'));
  }

  function inputId(name) {
    return 'rf-' + name.replace(/[^a-zA-Z0-9]/g, '-');
  }

  function buildInput(spec) {
    const id = inputId(spec.name);
    let input;
    if (spec.type === 'enum') {
      input = h('select', { id, name: spec.name }, [h('option', { value: '', text: t('choose') })].concat(
        ENUM_OPTIONS[spec.options].map((v) => h('option', { value: v, text: tn('enums', v) }))));
    } else {
      input = h('input', { id, name: spec.name, type: 'text', autocomplete: 'off', spellcheck: false });
      if (spec.type === 'id') { input.maxLength = 18; input.className = 'w-id'; }
      else if (spec.type === 'code6') { input.maxLength = 6; input.inputMode = 'numeric'; input.className = 'w-code'; input.dataset.codeDigits = '6'; }
      else if (spec.type === 'township') { input.maxLength = 9; input.inputMode = 'numeric'; input.className = 'w-code'; input.dataset.codeDigits = '9'; }
      else if (spec.type === 'community') { input.maxLength = 12; input.inputMode = 'numeric'; input.className = 'w-id'; }
      else if (spec.type === 'year') { input.maxLength = 4; input.inputMode = 'numeric'; input.className = 'w-code'; }
      else if (spec.type === 'phone') { input.maxLength = 11; input.inputMode = 'tel'; input.className = 'w-phone'; }
      else if (spec.type === 'int') { input.inputMode = 'numeric'; input.maxLength = 6; input.className = 'w-code'; }
      else if (spec.max) input.maxLength = spec.max;
    }
    if (spec.required) input.required = true;
    return input;
  }

  function formRow(name, label, input, required, hint) {
    const errId = input.id + '-error';
    const hintId = hint ? input.id + '-hint' : null;
    // A code's name, shown beside its input while typed.
    const digits = input.dataset.codeDigits ? parseInt(input.dataset.codeDigits, 10) : 0;
    const nameOut = digits ? codeNameHint(input, digits) : null;
    input.setAttribute('aria-describedby', (hintId ? hintId + ' ' : '') + (nameOut ? nameOut.id + ' ' : '') + errId);
    return h('div', { className: 'field', data: { field: name } }, [
      h('label', { htmlFor: input.id, text: label + (required ? '' : t('optional')) }, required ? h('span', { className: 'req', text: ' *', attrs: { 'aria-hidden': 'true' } }) : null),
      nameOut ? h('div', { className: 'code-line' }, [input, nameOut]) : input,
      hint ? h('span', { className: 'field-hint', id: hintId, text: hint }) : null,
      h('span', { className: 'field-error', id: errId, data: { for: name }, attrs: { 'aria-live': 'polite' } }),
    ]);
  }

  /** Updates the name shown beside a code input (by input). */
  const NAME_HINTS = new WeakMap();

  /**
   * The name beside a code input: looked up once the input holds `digits` digits;
   * 「未知代码」 for a code not in the registry. Only a hint: the node checks the code.
   */
  function codeNameHint(input, digits) {
    const out = h('span', { className: 'code-name', id: input.id + '-name', attrs: { 'aria-live': 'polite' } });
    const re = new RegExp('^\\d{' + digits + '}$');
    const show = (v) => {
      out.className = 'code-name';
      if (!NAMES.has(v)) { out.textContent = ''; return; }
      const n = NAMES.get(v);
      if (typeof n === 'string') { out.textContent = n; out.classList.add('known'); } else { out.textContent = t('div_unknown'); out.classList.add('unknown'); }
    };
    const update = () => {
      const v = String(input.value || '').trim();
      if (!re.test(v)) { out.textContent = ''; out.className = 'code-name'; return; }
      if (NAMES.has(v)) { show(v); return; }
      out.textContent = t('div_looking');
      out.className = 'code-name pending';
      ensureNames([v]).then(() => { if (String(input.value || '').trim() === v) show(v); });
    };
    input.addEventListener('input', update);
    input.addEventListener('change', update);
    NAME_HINTS.set(input, update);
    return out;
  }

  async function loadRecord(root) {
    await ensureNames([me()]);
    pageHeader(root, t('rc_title'));
    const kindSel = h('select', { id: 'record-kind' }, Object.keys(RECORD_KINDS).map((k) => h('option', { value: k, text: tn('record_kinds', k) })));
    kindSel.value = S.record.kind;
    root.appendChild(h('div', { className: 'filters' }, [h('label', { htmlFor: 'record-kind', text: t('rc_kind') }), kindSel]));
    const form = h('form', { id: 'record-form', className: 'record-form panel', noValidate: true, autocomplete: 'off' });
    root.appendChild(form);
    root.appendChild(h('div', { id: 'record-error', className: 'error-box', attrs: { role: 'alert' }, hidden: true }));
    root.appendChild(h('div', { id: 'record-result', className: 'result-box', attrs: { role: 'status' }, hidden: true }));
    kindSel.addEventListener('change', () => {
      S.record.kind = kindSel.value;
      S.record.id = uuidv7();
      buildRecordForm(form);
    });
    form.addEventListener('submit', (ev) => { ev.preventDefault(); submitRecord(form); });
    S.record.id = uuidv7();
    buildRecordForm(form);
  }

  function buildRecordForm(form) {
    clear(form);
    const kind = S.record.kind;
    const def = RECORD_KINDS[kind];
    form.dataset.kind = kind;
    form.dataset.eventId = S.record.id;
    const grid = h('div', { className: 'form-grid' });
    if (def.locality) {
      // A record of this locality's own work: no person, no origin or residence.
      form.appendChild(h('p', { className: 'muted', id: 'rf-locality-note', text: t('rc_locality_event') }));
    } else {
      if (def.sides.indexOf(S.record.side) < 0) S.record.side = def.sides[0];
      // Which side this locality is.
      const sideBox = h('fieldset', { className: 'side' }, h('legend', { text: t('rc_side') }));
      for (const side of ['residence', 'origin']) {
        const r = h('input', { type: 'radio', name: 'side', value: side, id: 'rf-side-' + side, checked: S.record.side === side, disabled: def.sides.indexOf(side) < 0 });
        r.addEventListener('change', () => { if (r.checked) { S.record.side = side; applySide(form); } });
        sideBox.appendChild(h('label', { className: 'check', htmlFor: r.id }, [r, ' ' + (side === 'residence' ? t('rc_side_res') : t('rc_side_org'))]));
      }
      form.appendChild(sideBox);
      const origin = buildInput({ name: 'origin', type: 'code6', required: true });
      const residence = buildInput({ name: 'residence', type: 'code6', required: true });
      grid.appendChild(formRow('origin', fieldLabel('origin'), origin, true));
      grid.appendChild(formRow('residence', fieldLabel('residence'), residence, true));
    }
    for (const spec of def.fields) {
      // Free text travels outside the personal tiers: say so where it is typed.
      grid.appendChild(formRow(spec.name, fieldLabel(spec.name), buildInput(spec), spec.required, spec.free ? t('hint_no_personal') : null));
    }
    const occ = h('input', { id: 'rf-occurred_at', name: 'occurred_at', type: 'datetime-local', required: true, value: cnLocalNow(), min: '2000-01-01T00:00', max: cnLocalNow() });
    grid.appendChild(formRow('occurred_at', fieldLabel('occurred_at'), occ, true));
    form.appendChild(grid);
    recordActions(form);
    if (!def.locality) applySide(form);
  }

  /** The submit and reset buttons of the record form, and its error clearing. */
  function recordActions(form) {
    const submit = h('button', { type: 'submit', id: 'record-submit', className: 'btn btn-primary', text: t('rc_submit') });
    const reset = h('button', { type: 'button', id: 'record-reset', className: 'btn', text: t('rc_reset') });
    reset.addEventListener('click', () => {
      S.record.id = uuidv7();
      buildRecordForm(form);
      hideRecordMessages(true);
    });
    form.appendChild(h('div', { className: 'form-actions' }, [submit, reset]));
    // Clear a field's error as soon as it is edited.
    form.addEventListener('input', (ev) => clearFieldError(form, ev.target && ev.target.name));
    form.addEventListener('change', (ev) => clearFieldError(form, ev.target && ev.target.name));
  }

  function clearFieldError(form, name) {
    if (!name) return;
    const fe = $('.field-error[data-for="' + cssEscape(name) + '"]', form);
    if (fe) fe.textContent = '';
    const el = form.elements.namedItem(name);
    if (el && el.classList) { el.classList.remove('invalid'); el.removeAttribute('aria-invalid'); }
  }

  function applySide(form) {
    const mine = me();
    const origin = form.elements.namedItem('origin');
    const residence = form.elements.namedItem('residence');
    const [local, other] = S.record.side === 'residence' ? [residence, origin] : [origin, residence];
    if (other.readOnly) other.value = '';
    other.readOnly = false;
    other.classList.remove('locked');
    local.value = mine;
    local.readOnly = true;
    local.classList.add('locked');
    clearFieldError(form, 'origin');
    clearFieldError(form, 'residence');
    for (const el of [origin, residence]) { const u = NAME_HINTS.get(el); if (u) u(); }
  }

  function hideRecordMessages(alsoResult) {
    const e = $('#record-error');
    if (e) { e.textContent = ''; e.hidden = true; }
    if (alsoResult) { const r = $('#record-result'); if (r) { clear(r); r.hidden = true; } }
  }

  function validateRecord(form) {
    const def = RECORD_KINDS[S.record.kind];
    const errors = {};
    const val = (n) => {
      const el = form.elements.namedItem(n);
      return el ? String(el.value || '').trim() : '';
    };
    const checkCode = (n, required) => {
      const v = val(n);
      if (!v) { if (required) errors[n] = t('v_required'); return; }
      if (!/^\d{6}$/.test(v)) errors[n] = t('v_code6');
    };
    if (!def.locality) {
      checkCode('origin', true);
      checkCode('residence', true);
    }
    // A township or community lies in the residence (a person's record) or in this county.
    const county = def.locality ? me().slice(0, 6) : val('residence');
    // Year of birth and marital status are for women only: not checked (nor sent) for a man.
    const male = val('body.sex') === 'SEX_MALE';
    if (!def.locality && !errors.origin && !errors.residence && val('origin') === val('residence')) {
      errors[S.record.side === 'residence' ? 'origin' : 'residence'] = t('v_same');
    }
    for (const spec of def.fields) {
      const v = val(spec.name);
      if (spec.women && male) continue;
      if (!v) { if (spec.required) errors[spec.name] = t('v_required'); continue; }
      switch (spec.type) {
        case 'id': {
          const c = checkIdNumber(v);
          if (c === 'shape') errors[spec.name] = t('v_id_shape');
          else if (c === 'check') errors[spec.name] = t('v_id');
          break;
        }
        case 'code6':
          if (!/^\d{6}$/.test(v)) errors[spec.name] = t('v_code6');
          break;
        case 'township': {
          if (!/^\d{9}$/.test(v) || !/^\d{6}$/.test(county) || v.slice(0, 6) !== county) errors[spec.name] = t('v_township');
          break;
        }
        case 'community': {
          const tw = val('body.township');
          if (!/^\d{12}$/.test(v) || v.slice(0, 6) !== county || (tw && v.slice(0, 9) !== tw)) errors[spec.name] = t('v_community');
          break;
        }
        case 'year':
          if (!/^(19|20)\d{2}$/.test(v)) errors[spec.name] = t('v_year');
          break;
        case 'phone':
          if (!/^1\d{10}$/.test(v)) errors[spec.name] = t('v_phone');
          break;
        case 'int':
          if (!/^\d{1,6}$/.test(v)) errors[spec.name] = t('v_int');
          break;
        default:
          break;
      }
    }
    const occ = val('occurred_at');
    if (!occ) errors.occurred_at = t('v_required');
    else {
      const m = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2})(:\d{2})?/.exec(occ);
      const at = m ? Date.parse(m[1] + (m[2] || ':00') + '+08:00') : NaN;
      if (isNaN(at)) errors.occurred_at = t('v_time');
      else if (at > Date.now()) errors.occurred_at = t('v_future');
      else if (at < Date.parse('2000-01-01T00:00:00+08:00')) errors.occurred_at = t('v_too_old');
    }
    return errors;
  }

  function showFieldErrors(form, errors, prefix) {
    let first = null;
    for (const name of Object.keys(errors)) {
      const fe = $('.field-error[data-for="' + cssEscape(name) + '"]', form);
      const el = form.elements.namedItem(name);
      if (!fe && !el) continue;
      if (fe) fe.textContent = (prefix || '') + errors[name];
      if (el && el.classList) { el.classList.add('invalid'); el.setAttribute('aria-invalid', 'true'); if (!first) first = el; }
    }
    if (first && first.focus) first.focus();
    return first !== null;
  }

  function clearAllFieldErrors(form) {
    for (const e of $$('.field-error', form)) e.textContent = '';
    for (const e of $$('.invalid', form)) { e.classList.remove('invalid'); e.removeAttribute('aria-invalid'); }
  }

  function setPath(obj, path, value) {
    const parts = path.split('.');
    let o = obj;
    for (let i = 0; i < parts.length - 1; i++) {
      if (!o[parts[i]] || typeof o[parts[i]] !== 'object') o[parts[i]] = {};
      o = o[parts[i]];
    }
    o[parts[parts.length - 1]] = value;
  }

  function recordEvent(form) {
    const def = RECORD_KINDS[S.record.kind];
    const val = (n) => String(form.elements.namedItem(n).value || '').trim();
    const ev = {
      id: S.record.id,
      kind: S.record.kind,
      occurred_at: val('occurred_at').slice(0, 16) + ':00+08:00',
      body: {},
    };
    if (!def.locality) {
      ev.origin = val('origin');
      ev.residence = val('residence');
    }
    const male = def.fields.some((f) => f.options === 'sex') && val('body.sex') === 'SEX_MALE';
    for (const spec of def.fields) {
      let v = val(spec.name);
      if (!v) continue;
      // Year of birth and marital status are recorded for women only (the node refuses them for men).
      if (spec.women && male) continue;
      if (spec.type === 'id') v = v.toUpperCase();
      if (spec.options === 'active') setPath(ev, spec.name, v === 'active_true');
      else setPath(ev, spec.name, spec.type === 'int' || spec.type === 'year' ? parseInt(v, 10) : v);
    }
    return ev;
  }

  async function submitRecord(form) {
    hideRecordMessages(true);
    clearAllFieldErrors(form);
    const errors = validateRecord(form);
    if (Object.keys(errors).length) {
      showFieldErrors(form, errors);
      return;
    }
    const submit = $('#record-submit', form);
    const event = recordEvent(form);
    const gen = S.nav;
    submit.disabled = true;
    setReady('');
    try {
      const { data } = await api('POST', '/v1/events', event);
      if (gen !== S.nav) return;
      await ensureNames((data && Array.isArray(data.recipients) ? data.recipients : []).map((r) => r.locality));
      if (gen !== S.nav) return;
      // Success: nothing personal stays on the page; the next form gets a new id.
      S.record.id = uuidv7();
      buildRecordForm(form);
      showRecordResult(data);
    } catch (e) {
      if (e instanceof SignedOut) return;
      const box = $('#record-error');
      if (e.status === 409) {
        S.record.id = uuidv7();
        form.dataset.eventId = S.record.id;
        box.textContent = t('rc_conflict') + ' (' + e.message + ')';
        box.hidden = false;
      } else if (e.status === 0) {
        box.textContent = t('rc_retry', e.message);
        box.hidden = false;
      } else {
        let fieldName = e.body && typeof e.body.field === 'string' ? e.body.field : null;
        if (!fieldName) {
          const m = /^field `([^`]+)`/.exec(e.message || '');
          if (m) fieldName = m[1];
        }
        const shown = fieldName ? showFieldErrors(form, { [fieldName]: e.message }, t('rc_server_field')) : false;
        if (!shown) {
          box.textContent = t('rc_server_field') + e.message;
          box.hidden = false;
        }
      }
    } finally {
      submit.disabled = false;
    }
    if (gen === S.nav) setReady('record');
  }

  /** The node's known warnings in the page's language; others as the node words them. */
  function localWarning(w) {
    if (/^field `identity\.idNumber`: check digit/.test(w)) return t('w_id_check');
    if (/^field `person_id_number`: check digit/.test(w)) return t('w_person_id_check');
    return w;
  }

  function showRecordResult(data) {
    const box = $('#record-result');
    if (!box) return;
    clear(box);
    const recips = [];
    for (const r of data && Array.isArray(data.recipients) ? data.recipients : []) {
      if (recips.length) recips.push(t('list_sep'));
      recips.push(place(r.locality));
      if (r.channel_seq !== undefined) recips.push(' #' + r.channel_seq);
    }
    box.appendChild(h('div', { className: 'ok-line', text: t('rc_done', data && data.seq !== undefined ? data.seq : '?') + (data && data.duplicate ? t('rc_dup') : '') }));
    box.appendChild(h('div', null, recips.length ? tx('rc_recipients', h('span', null, recips)) : t('rc_no_recipients')));
    if (data && data.id) box.appendChild(h('div', { className: 'muted small mono', text: 'id ' + data.id }));
    const warnings = data && Array.isArray(data.warnings) ? data.warnings : [];
    if (warnings.length) {
      box.appendChild(h('div', { className: 'warn-text', text: t('rc_warnings') }));
      box.appendChild(h('ul', { className: 'warnings' }, warnings.map((w) => h('li', { text: typeof w === 'string' ? localWarning(w) : JSON.stringify(w) }))));
    }
    box.dataset.seq = data && data.seq !== undefined ? String(data.seq) : '';
    box.hidden = false;
  }

  // ---------------------------------------------------------------- flows

  const FLOW_RULE = 'month vs mean of the 3 months before: warn if max(count, mean) >= 10 and |count - mean| > max(0.5 * mean, 3 * sqrt(mean))';

  async function loadFlows(root, gen) {
    pageHeader(root, t('fl_title'));
    const data = await get('/v1/flows');
    if (gen !== S.nav) return;
    const rows = Array.isArray(data.rows) ? data.rows : [];
    const warnings = Array.isArray(data.warnings) ? data.warnings : [];
    const codes = [];
    for (const r of rows.concat(warnings)) codes.push(r.residence, r.origin);
    await ensureNames(codes);
    if (gen !== S.nav) return;

    const chartPanel = h('div', { className: 'panel' });
    const chartBox = h('div', { id: 'flows-chart', className: 'chart' });
    chartPanel.appendChild(chartBox);
    root.appendChild(chartPanel);

    const warnPanel = h('div', { className: 'panel' });
    warnPanel.appendChild(sectionHead(t('fl_warnings')));
    const wl = h('ul', { id: 'flows-warnings', className: 'warnings' });
    for (const w of warnings) {
      const count = w.count !== undefined ? w.count : w.arrivals;
      const mean = w.mean !== undefined ? w.mean : w.baseline;
      const dir = w.direction === 'surge' ? t('fl_surge') : w.direction === 'drop' ? t('fl_drop') : '';
      wl.appendChild(h('li', { data: { period: w.period, residence: w.residence, origin: w.origin || '' } },
        tx('fl_warn_item', w.period, place(w.residence), w.origin ? place(w.origin) : t('fl_all_origins'), count, typeof mean === 'number' ? mean.toFixed(1) : mean, dir)));
    }
    if (!warnings.length) wl.appendChild(h('li', { className: 'muted', text: t('fl_no_warnings') }));
    warnPanel.appendChild(wl);
    if (data.rule) {
      // The node states its rule in English; the known rule is shown in the page's language.
      const rule = data.rule === FLOW_RULE ? t('fl_rule_known') : data.rule;
      warnPanel.appendChild(h('p', { id: 'flows-rule', className: 'muted small', text: t('fl_rule', rule), title: data.rule }));
    }
    root.appendChild(warnPanel);

    const tablePanel = h('div', { className: 'panel' });
    tablePanel.appendChild(sectionHead(t('fl_table'), exportButtons('flows', {})));
    const tbl = table('flows-table', [t('col_period'), t('col_residence'), t('col_origin'), t('col_arrivals'), t('col_departures')], 'flows');
    const tb = tbl.tBodies[0];
    const warned = (r) => warnings.some((w) => w.period === r.period && w.residence === r.residence && (!w.origin || w.origin === r.origin));
    const sorted = rows.slice().sort((a, b) => String(b.period).localeCompare(String(a.period)) || String(a.origin).localeCompare(String(b.origin)));
    for (const r of sorted) {
      tb.appendChild(h('tr', { className: warned(r) ? 'warned' : '', data: { period: r.period, residence: r.residence, origin: r.origin } }, [
        h('td', { text: r.period }),
        h('td', null, place(r.residence)),
        h('td', null, place(r.origin)),
        h('td', { className: 'num', text: r.arrivals }),
        h('td', { className: 'num', text: r.departures }),
      ]));
    }
    if (!sorted.length) emptyRow(tb, 5);
    tablePanel.appendChild(tbl);
    root.appendChild(tablePanel);

    renderFlowsChart(chartBox, rows, warnings);
  }

  /** Every month from the first to the last of `list` (at least the last 6 months up to today). */
  function monthRange(list) {
    const ok = list.filter((m) => /^\d{4}-\d{2}$/.test(m)).sort();
    const today = ((S.who && S.who.today) || cnLocalNow()).slice(0, 7);
    const toN = (m) => parseInt(m.slice(0, 4), 10) * 12 + parseInt(m.slice(5, 7), 10) - 1;
    let lo = ok.length ? toN(ok[0]) : toN(today);
    let hi = Math.max(ok.length ? toN(ok[ok.length - 1]) : 0, toN(today));
    lo = Math.min(lo, hi - 5);
    if (hi - lo > 60) lo = hi - 60;
    const out = [];
    for (let n = lo; n <= hi; n++) out.push(Math.floor(n / 12) + '-' + pad((n % 12) + 1));
    return out;
  }

  function renderFlowsChart(box, rows, warnings) {
    const chart = makeChart(box);
    if (!chart) return;
    const months = monthRange(rows.map((r) => String(r.period)).concat(warnings.map((w) => String(w.period))));
    const arr = months.map(() => 0);
    const dep = months.map(() => 0);
    for (const r of rows) {
      const i = months.indexOf(String(r.period));
      if (i < 0) continue;
      arr[i] += Number(r.arrivals) || 0;
      dep[i] += Number(r.departures) || 0;
    }
    const marks = [];
    for (const w of warnings) {
      const i = months.indexOf(String(w.period));
      if (i < 0) continue;
      marks.push({ coord: [i, arr[i]], value: w.direction === 'drop' ? '↓' : '↑' });
    }
    chart.setOption({
      animation: false,
      color: ['#2f6eb5', '#e6a23c', '#c62828'],
      grid: { left: 48, right: 24, top: 40, bottom: 32 },
      tooltip: { trigger: 'axis', renderMode: 'richText' },
      legend: { top: 0, data: [t('fl_arrivals'), t('fl_departures')] },
      xAxis: { type: 'category', data: months },
      yAxis: { type: 'value', minInterval: 1 },
      series: [
        {
          name: t('fl_arrivals'), type: 'bar', data: arr, barMaxWidth: 28,
          markPoint: marks.length ? { symbol: 'pin', symbolSize: 36, itemStyle: { color: '#c62828' }, label: { color: '#fff' }, data: marks } : undefined,
        },
        { name: t('fl_departures'), type: 'bar', data: dep, barMaxWidth: 28 },
      ],
    });
  }

  // ---------------------------------------------------------------- health

  async function loadHealth(root, gen) {
    pageHeader(root, t('hl_title'));
    const showReport = may('read_disclosures');
    const res = await Promise.allSettled([
      get('/v1/status'),
      get('/v1/quarantine?' + qs({ limit: 100 })),
      get('/v1/audit'),
      // The node's default period: this month to today (China time).
      showReport ? get('/v1/disclosures/report') : Promise.resolve(null),
    ]);
    if (gen !== S.nav) return;
    if (res.some((r) => r.status === 'rejected' && r.reason instanceof SignedOut)) return;
    // The report's failure is shown in its own panel.
    const errors = res.filter((r, i) => r.status === 'rejected' && i !== 3).map((r) => r.reason);
    const codes = [me()];
    if (res[0].status === 'fulfilled' && res[0].value) {
      const st = res[0].value;
      codes.push(st.locality);
      for (const o of st.outbound_channels || []) codes.push(o.recipient);
      for (const i of st.inbound_channels || []) codes.push(i.author);
    }
    if (res[1].status === 'fulfilled' && res[1].value) for (const e of res[1].value.entries || []) codes.push(e.author);
    if (res[3].status === 'fulfilled' && res[3].value) codes.push(...codesOfReport(res[3].value));
    await ensureNames(codes);
    if (gen !== S.nav) return;

    if (res[0].status === 'fulfilled') root.appendChild(statusPanel(res[0].value));
    const auditPanel = h('div', { className: 'panel', id: 'audit-panel' });
    auditPanel.appendChild(sectionHead(t('hl_audit'), [h('button', { type: 'button', id: 'audit-run', className: 'btn btn-primary btn-small', text: t('hl_audit_run'), on: { click: runAudit } })]));
    auditPanel.appendChild(h('p', { id: 'audit-last', className: 'muted' }));
    auditPanel.appendChild(h('div', { id: 'audit-result', className: 'result-box', attrs: { role: 'status' }, hidden: true }));
    root.appendChild(auditPanel);
    if (res[2].status === 'fulfilled') showAudit(res[2].value, false);
    if (res[1].status === 'fulfilled') root.appendChild(quarantinePanel(res[1].value));
    if (showReport) {
      root.appendChild(disclosureReportPanel(gen));
      if (res[3].status === 'fulfilled') fillDisclosureReport(res[3].value, true);
      else disclosureReportFailed(res[3].reason);
    }
    if (errors.length) showPageError(errors[0]);
  }

  const DISCLOSURE_TIERS = ['identity', 'contact', 'health'];

  /** The locality codes among a disclosure report's recipients. */
  function codesOfReport(data) {
    return (data && Array.isArray(data.recipients) ? data.recipients : []).map((r) => r.recipient);
  }

  /** The health page's disclosure summary: releases per recipient, channel and role in a period. */
  function disclosureReportPanel(gen) {
    const today = ((S.who && S.who.today) || cnLocalNow()).slice(0, 10);
    const from = h('input', { id: 'disclosure-from', type: 'date', value: today.slice(0, 8) + '01' });
    const to = h('input', { id: 'disclosure-to', type: 'date', value: today });
    const btn = h('button', { type: 'submit', id: 'disclosure-refresh', className: 'btn btn-small', text: t('refresh') });
    const form = h('form', { id: 'disclosure-form', className: 'dr-form', noValidate: true, autocomplete: 'off' }, [
      h('label', { htmlFor: 'disclosure-from', className: 'inline', text: t('dr_from') }), from,
      h('label', { htmlFor: 'disclosure-to', className: 'inline', text: t('dr_to') }), to,
      btn,
    ]);
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const f = from.value;
      const tv = to.value;
      if (f && tv && f > tv) { disclosureReportFailed(new Error(t('dr_bad_range'))); return; }
      setReady('');
      btn.disabled = true;
      try {
        const data = await get('/v1/disclosures/report?' + qs({ from: f, to: tv }));
        await ensureNames(codesOfReport(data));
        if (gen === S.nav) fillDisclosureReport(data, false);
      } catch (e) {
        if (e instanceof SignedOut) return;
        if (gen === S.nav) disclosureReportFailed(e);
      } finally {
        btn.disabled = false;
      }
      if (gen === S.nav) setReady('health');
    });
    // The default period (the node's answer replaces it): this month, which names the panel.
    const panel = h('div', { id: 'disclosure-report-panel', className: 'panel', data: { state: 'loading', defaultFrom: from.value, defaultTo: to.value } });
    panel.appendChild(sectionHead(t('dr_title'), [form]));
    panel.appendChild(h('p', { id: 'disclosure-range', className: 'muted small' }));
    panel.appendChild(h('div', { id: 'disclosure-report-error', className: 'error-text', attrs: { role: 'alert' }, hidden: true }));
    const tierCols = DISCLOSURE_TIERS.map((x) => tn('dc_tiers', x));
    const cols = [t('col_dc_recipient'), t('col_dc_channel'), t('col_dc_role'), t('col_dr_releases'), t('col_dr_persons'), t('col_dr_masked')].concat(tierCols);
    const tbl = table('disclosure-report-table', cols, 'disclosure-report');
    tbl.appendChild(h('tfoot'));
    panel.appendChild(h('div', { className: 'scroll-x' }, tbl));
    return panel;
  }

  /** Fills the summary; `initial`: the node's default period (this month), which names the panel. */
  function fillDisclosureReport(data, initial) {
    const panel = $('#disclosure-report-panel');
    const tbl = $('#disclosure-report-table');
    if (!panel || !tbl) return;
    const err = $('#disclosure-report-error');
    if (err) { err.textContent = ''; err.hidden = true; }
    tbl.hidden = false;
    const from = String((data && data.from) || '');
    const to = String((data && data.to) || '');
    if (initial) {
      panel.dataset.defaultFrom = from;
      panel.dataset.defaultTo = to;
      if (from && $('#disclosure-from')) $('#disclosure-from').value = from;
      if (to && $('#disclosure-to')) $('#disclosure-to').value = to;
    }
    const thisMonth = from === panel.dataset.defaultFrom && to === panel.dataset.defaultTo;
    const h2 = $('.section-head h2', panel);
    if (h2) h2.textContent = thisMonth ? t('dr_title') : t('dr_title_range');
    const range = $('#disclosure-range');
    if (range) range.textContent = from && to ? t('dr_range', from, to) : '';
    const rows = data && Array.isArray(data.recipients) ? data.recipients.slice() : [];
    rows.sort((a, b) => (Number(b.releases) || 0) - (Number(a.releases) || 0)
      || String(a.recipient).localeCompare(String(b.recipient)) || String(a.channel).localeCompare(String(b.channel)));
    const tb = clear(tbl.tBodies[0]);
    const num = (v) => h('td', { className: 'num', text: typeof v === 'number' ? v : 0 });
    const sum = { releases: 0, masked: 0, tiers: {} };
    for (const r of rows) {
      const tiers = r.tiers && typeof r.tiers === 'object' ? r.tiers : {};
      sum.releases += Number(r.releases) || 0;
      sum.masked += Number(r.masked) || 0;
      for (const x of DISCLOSURE_TIERS) sum.tiers[x] = (sum.tiers[x] || 0) + (Number(tiers[x]) || 0);
      tb.appendChild(h('tr', { data: { recipient: r.recipient, channel: r.channel, role: r.role || '' } }, [
        h('td', { className: 'nowrap', title: String(r.recipient || '') }, recipientText(r.recipient)),
        h('td', { className: 'nowrap', text: channelText(r.channel) }),
        h('td', { className: 'nowrap', text: roleName(r.role) }),
        num(r.releases), num(r.persons), num(r.masked),
      ].concat(DISCLOSURE_TIERS.map((x) => num(tiers[x])))));
    }
    if (!rows.length) emptyRow(tb, 6 + DISCLOSURE_TIERS.length);
    const foot = clear(tbl.tFoot || tbl.appendChild(h('tfoot')));
    if (rows.length > 1) {
      foot.appendChild(h('tr', { className: 'total' }, [
        h('td', { text: t('dr_total'), attrs: { colspan: 3 } }),
        num(sum.releases), h('td', { className: 'num', text: t('dash') }), num(sum.masked),
      ].concat(DISCLOSURE_TIERS.map((x) => num(sum.tiers[x])))));
    }
    panel.dataset.state = 'ok';
    panel.dataset.from = from;
    panel.dataset.to = to;
  }

  /** Shows a failure in the summary's panel: a refused range keeps the figures shown; a node without the log (404) hides the table. */
  function disclosureReportFailed(e) {
    const panel = $('#disclosure-report-panel');
    if (!panel) return;
    const err = $('#disclosure-report-error');
    const fromApi = !!e && typeof e.status === 'number';
    if (err) { err.textContent = fromApi ? disclosureError(e) : (e && e.message ? e.message : String(e)); err.hidden = false; }
    if (!fromApi) return; // checked here, nothing asked
    const unavailable = e.status === 404;
    const tbl = $('#disclosure-report-table');
    if (tbl && (unavailable || panel.dataset.state === 'loading')) tbl.hidden = true;
    const form = $('#disclosure-form');
    if (form && unavailable) form.hidden = true;
    if (panel.dataset.state !== 'ok' || unavailable) panel.dataset.state = unavailable ? 'unavailable' : 'error';
  }

  function statusPanel(st) {
    const panel = h('div', { className: 'panel' });
    panel.appendChild(sectionHead(t('hl_node')));
    const head = st.own_head || {};
    const nats = st.nats_connected === true;
    const stats = h('div', { id: 'status-summary', className: 'stats' }, [
      stat(t('hl_locality'), st.locality, { sub: nameOf(st.locality) || null }),
      stat(t('hl_head'), head.seq !== undefined ? '#' + head.seq : t('dash'), { sub: head.hash ? String(head.hash).slice(0, 16) + '…' : null, mono: true }),
      stat(t('hl_events'), st.events_held),
      stat(t('hl_outbox'), st.outbox_pending, { cls: st.outbox_pending > 0 ? 'warn' : '' }),
      stat(t('hl_nats'), nats ? t('hl_connected') : t('hl_disconnected'), { cls: nats ? 'pass' : 'fail', id: 'nats-state' }),
    ].concat(lagStats(st.lag_ms)));
    panel.appendChild(stats);
    panel.appendChild(h('h3', { text: t('hl_channels') }));
    const by = new Map();
    const row = (c) => { if (!by.has(c)) by.set(c, { c }); return by.get(c); };
    for (const o of st.outbound_channels || []) { const r = row(String(o.recipient)); r.sent = o.head; r.acked = o.acked; }
    for (const i of st.inbound_channels || []) { row(String(i.author)).received = i.head; }
    // The acknowledged head is shown only when the node reports it.
    const withAcked = (st.outbound_channels || []).some((o) => o.acked !== undefined);
    const cols = [t('col_counterpart'), t('col_sent')].concat(withAcked ? [t('col_acked')] : [], [t('col_received')]);
    const tbl = table('status-table', cols, 'status');
    const tb = tbl.tBodies[0];
    for (const r of Array.from(by.values()).sort((a, b) => a.c.localeCompare(b.c))) {
      const lag = typeof r.sent === 'number' && typeof r.acked === 'number' && r.acked < r.sent;
      tb.appendChild(h('tr', { className: lag ? 'lagging' : '', data: { counterpart: r.c } }, [
        h('td', null, place(r.c)),
        h('td', { className: 'num', text: r.sent !== undefined ? r.sent : t('dash') }),
        withAcked ? h('td', { className: 'num' + (lag ? ' warn' : ''), text: r.acked !== undefined && r.acked !== null ? r.acked : t('dash') }) : null,
        h('td', { className: 'num', text: r.received !== undefined ? r.received : t('dash') }),
      ]));
    }
    if (!tb.rows.length) emptyRow(tb, cols.length);
    panel.appendChild(tbl);
    return panel;
  }

  /** A summary card. `o`: {sub, mono, cls, id, title, data}. */
  function stat(label, value, o) {
    o = o || {};
    return h('div', { className: 'stat ' + (o.cls || ''), id: o.id || undefined, title: o.title || undefined, data: o.data }, [
      h('div', { className: 'stat-label', text: label }),
      h('div', { className: 'stat-value', text: value === undefined || value === null ? t('dash') : String(value) }),
      o.sub ? h('div', { className: 'stat-sub' + (o.mono ? ' mono' : ''), text: o.sub }) : null,
    ]);
  }

  /** A duration in milliseconds as text: 1.2 ms, 340 ms, 2.5 s, 3.1 min. */
  function fmtMs(v) {
    if (typeof v !== 'number' || !isFinite(v) || v < 0) return t('dash');
    if (v < 100) return t('unit_ms', v.toFixed(1));
    if (v < 1000) return t('unit_ms', Math.round(v));
    if (v < 60000) return t('unit_s', (v / 1000).toFixed(1));
    return t('unit_min', (v / 60000).toFixed(1));
  }

  /** The replication-lag cards: p50 and p99 from `lag_ms` (absent on older nodes; no samples → —). */
  function lagStats(lag) {
    const present = !!lag && typeof lag === 'object';
    const samples = present && typeof lag.samples === 'number' ? lag.samples : 0;
    const sub = !present ? t('hl_lag_absent') : samples > 0 ? t('hl_lag_samples', samples) : t('hl_lag_none');
    const card = (q, id) => stat(t('hl_lag_' + q), samples > 0 ? fmtMs(lag[q]) : t('dash'), {
      sub, id, title: t('hl_lag_title'), cls: samples > 0 ? '' : 'muted-stat',
      data: { samples: present ? samples : '', ms: samples > 0 && typeof lag[q] === 'number' ? lag[q] : '' },
    });
    return [card('p50', 'status-lag-p50'), card('p99', 'status-lag-p99')];
  }

  function quarantinePanel(q) {
    const panel = h('div', { className: 'panel' });
    panel.appendChild(sectionHead(t('hl_quarantine'), exportButtons('quarantine', {})));
    panel.appendChild(h('p', { id: 'quarantine-summary', className: 'muted small', text: t('hl_q_summary', countOf(q.held), countOf(q.evicted)) }));
    const tbl = table('quarantine-table', [t('col_time'), t('col_author'), t('col_code'), t('col_reason')], 'quarantine');
    const tb = tbl.tBodies[0];
    for (const e of q.entries || []) {
      tb.appendChild(h('tr', { data: { id: e.id, code: e.code } }, [
        h('td', { className: 'nowrap', text: fmtInstant(e.at || e.received_at) }),
        h('td', null, e.author !== undefined && e.author !== null ? place(e.author) : t('dash')),
        h('td', { className: 'mono', text: e.code || '' }),
        h('td', { className: 'reason', text: e.reason || '' }),
      ]));
    }
    if (!tb.rows.length) emptyRow(tb, 4);
    panel.appendChild(tbl);
    return panel;
  }

  /** A count that may come as a number or as `{count, …}`. */
  function countOf(v) {
    if (typeof v === 'number') return v;
    if (v && typeof v === 'object' && typeof v.count === 'number') return v.count;
    return 0;
  }

  function faultText(f) {
    if (typeof f === 'string') return f;
    if (f && typeof f === 'object') {
      const parts = [];
      if (f.code) parts.push(String(f.code));
      if (f.author) parts.push(String(f.author) + (f.seq !== undefined ? ':' + f.seq : ''));
      const m = f.reason || f.message || f.problem || f.detail;
      if (m) parts.push(String(m));
      return parts.length ? parts.join(' · ') : JSON.stringify(f);
    }
    return String(f);
  }

  function showAudit(a, fresh) {
    const last = $('#audit-last');
    if (last) {
      if (a.running) last.textContent = t('hl_audit_running');
      else if (!a.at) last.textContent = t('hl_audit_never');
      else last.textContent = t('hl_audit_last', fmtInstant(a.at), a.events !== undefined ? a.events : t('dash'), a.quarantined !== undefined ? a.quarantined : t('dash'));
    }
    const box = $('#audit-result');
    if (!box) return;
    clear(box);
    if (!a.at && !fresh) { box.hidden = true; return; }
    const faults = Array.isArray(a.faults) ? a.faults.slice() : [];
    if (a.error) faults.unshift(a.error);
    const ok = !a.error && (a.ok === true || (a.ok === undefined && !faults.length));
    box.className = 'result-box ' + (ok ? 'ok' : 'bad');
    box.dataset.ok = ok ? 'true' : 'false';
    box.appendChild(h('div', { className: ok ? 'pass-text' : 'fail-text', text: ok ? t('hl_audit_ok') : t('hl_audit_faults', faults.length) }));
    if (faults.length) box.appendChild(h('ul', { className: 'faults' }, faults.map((f) => h('li', { text: faultText(f) }))));
    box.hidden = false;
  }

  async function runAudit() {
    const btn = $('#audit-run');
    const gen = S.nav;
    if (btn) btn.disabled = true;
    setReady('');
    clearPageError();
    try {
      const { data } = await api('POST', '/v1/audit', {});
      if (gen === S.nav) showAudit(data, true);
    } catch (e) {
      if (e instanceof SignedOut) return;
      // Shown in the audit panel, beside the button that was pressed.
      const box = $('#audit-result');
      if (box && gen === S.nav) {
        clear(box);
        box.className = 'result-box bad';
        box.dataset.ok = 'false';
        box.appendChild(h('div', { className: 'fail-text', text: t('error_prefix') + (e.message || String(e)) }));
        box.hidden = false;
      } else showPageError(e);
    } finally {
      if (btn) btn.disabled = false;
    }
    if (gen === S.nav) setReady('health');
  }

  // ---------------------------------------------------------------- routing

  const LOADERS = {
    overview: { need: ['read_views'], load: loadOverview },
    cases: { need: ['read_views'], load: loadCases },
    person: { need: ['read_views'], load: loadPerson },
    record: { need: ['append'], load: loadRecord },
    flows: { need: ['read_views'], load: loadFlows },
    health: { need: ['read_status'], load: loadHealth },
  };

  function allowed(page) {
    const l = LOADERS[page];
    return !!l && l.need.every(may);
  }

  function pageFromHash() {
    const m = /^#\/([a-z]+)/.exec(location.hash || '');
    return m ? m[1] : '';
  }

  async function navigate() {
    if (!S.who) return;
    const gen = ++S.nav;
    setReady('');
    disposeCharts();
    clearPageError();
    let page = pageFromHash();
    if (!allowed(page)) {
      const first = PAGES.find(allowed);
      if (page && first && PAGES.indexOf(page) < 0) page = first;
      else if (!page || !allowed(page)) page = first || 'none';
      if (page !== 'none' && pageFromHash() !== page) {
        history.replaceState(null, '', location.pathname + location.search + '#/' + page);
      }
    }
    if (page !== S.page) {
      S.answer = null;
      // Unmasked personal data is shown only while asked for on the person page.
      S.reveal = false;
    }
    S.page = page;
    for (const a of $$('#nav a[data-page]')) {
      a.classList.toggle('active', a.dataset.page === page);
      if (a.dataset.page === page) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
    }
    for (const sec of $$('#main > section.page')) sec.hidden = sec.id !== 'page-' + page;
    const root = $('#page-' + page);
    if (page === 'none') { setReady('none'); return; }
    clear(root);
    const body = h('div', { className: 'page-body' });
    root.appendChild(body);
    root.classList.add('busy');
    try {
      await LOADERS[page].load(body, gen);
    } catch (e) {
      if (e instanceof SignedOut) return;
      if (gen === S.nav) showPageError(e);
    }
    if (gen !== S.nav) return;
    root.classList.remove('busy');
    setReady(page);
  }

  // ---------------------------------------------------------------- sign-in

  function applyStaticI18n() {
    document.documentElement.lang = S.lang === 'en' ? 'en' : 'zh-CN';
    for (const e of $$('[data-i18n]')) e.textContent = t(e.dataset.i18n);
    $('#lang-toggle').textContent = t('lang_switch');
    $('#lang-toggle').lang = S.lang === 'en' ? 'zh-CN' : 'en'; // the button names the other language in that language
    $('#nav').setAttribute('aria-label', t('nav_label'));
    document.title = S.lang === 'en' ? 'Yipan · Operator console' : '一盘 · 运营控制台';
    renderWho();
  }

  function renderWho() {
    const who = $('#who');
    const today = $('#today');
    if (!S.who) { who.hidden = true; today.hidden = true; return; }
    const role = String(S.who.role || '');
    const roleName = tn('roles', role);
    clear(who);
    append(who, [place(S.who.locality), ' · ' + (roleName !== role ? roleName + ' (' + role + ')' : role)]);
    who.hidden = false;
    if (S.who.today) { today.textContent = t('today', S.who.today); today.hidden = false; } else today.hidden = true;
  }

  function showSignin(message) {
    $('#app').hidden = true;
    $('#signout').hidden = true;
    $('#signin').hidden = false;
    const err = $('#signin-error');
    if (message) { err.textContent = message; err.hidden = false; } else { err.textContent = ''; err.hidden = true; }
    renderWho();
    const input = $('#signin-token');
    input.value = '';
    input.focus();
    setReady('signin');
  }

  /** What one credential chose on its pages; none of it carries over to the next sign-in. */
  function resetPageState() {
    S.page = null;
    S.person = null;
    S.reveal = false;
    S.answer = null;
    S.month = null;
    S.trend = { scope: '', indicator: 'all', meta: {} };
    S.cases = { kind: '', counterpart: '', direction: '', overdueOnly: false };
    S.record = { kind: 'ArrivalRegistered', side: 'residence', id: null };
    S.qualityOpen = false;
    S.personFlags = new Map();
  }

  function signOut(message) {
    S.token = null;
    S.who = null;
    S.nav++;
    S.signin++;
    resetPageState();
    disposeCharts();
    try { sessionStorage.removeItem(TOKEN_KEY); } catch (_) { /* storage off */ }
    // Nothing of this credential's pages stays in the document, hidden or not.
    for (const sec of $$('#main > section.page')) {
      if (sec.id !== 'page-none') clear(sec);
      sec.hidden = true;
    }
    clearPageError();
    $('#who').textContent = '';
    $('#today').textContent = '';
    showSignin(message || '');
  }

  async function signIn(token) {
    S.token = token;
    const attempt = ++S.signin;
    const btn = $('#signin-submit');
    btn.disabled = true;
    try {
      const r = await fetch(BASE + '/v1/whoami', { headers: { Authorization: 'Bearer ' + token, Accept: 'application/json' }, cache: 'no-store', credentials: 'omit', referrerPolicy: 'no-referrer' });
      if (attempt !== S.signin) return; // a later sign-in (another link) took over
      if (r.status === 401) { signOut(t('signin_invalid')); return; }
      if (!r.ok) { const e = await errorOf(r); S.token = null; showSignin(t('signin_failed', e.message)); return; }
      const who = await r.json();
      if (attempt !== S.signin) return;
      S.who = who;
      try { sessionStorage.setItem(TOKEN_KEY, token); } catch (_) { /* storage off */ }
      startApp();
    } catch (e) {
      if (attempt !== S.signin) return;
      S.token = null;
      showSignin(t('signin_failed', e && e.message ? e.message : e));
    } finally {
      btn.disabled = false;
    }
  }

  function startApp() {
    $('#signin').hidden = true;
    $('#signin-error').hidden = true;
    $('#app').hidden = false;
    $('#signout').hidden = false;
    for (const a of $$('#nav a[data-page]')) a.hidden = !allowed(a.dataset.page);
    renderWho();
    // The names of the locality and its counterparts, in one call; pages wait for the same call.
    const attempt = S.signin;
    ensureNames([S.who.locality].concat(S.who.counterparts || [])).then(() => {
      if (attempt === S.signin && S.who) renderWho();
    });
    navigate();
  }

  function init() {
    try {
      const l = localStorage.getItem(LANG_KEY);
      if (l === 'en' || l === 'zh') S.lang = l;
    } catch (_) { /* storage off */ }
    applyStaticI18n();

    // A sign-in link carries the token in the fragment: take it and wipe it from the address bar.
    let token = null;
    const hash = location.hash || '';
    if (hash.indexOf('#token=') === 0) {
      try { token = decodeURIComponent(hash.slice('#token='.length)).trim(); } catch (_) { token = hash.slice(7).trim(); }
      history.replaceState(null, '', location.pathname + location.search);
    }
    if (!token) {
      try { token = sessionStorage.getItem(TOKEN_KEY); } catch (_) { token = null; }
    }

    $('#signin-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      const v = $('#signin-token').value.trim();
      $('#signin-token').value = '';
      if (!v) { showSignin(t('signin_empty')); return; }
      signIn(v);
    });
    $('#signout').addEventListener('click', () => signOut(''));
    $('#lang-toggle').addEventListener('click', () => {
      S.lang = S.lang === 'zh' ? 'en' : 'zh';
      try { localStorage.setItem(LANG_KEY, S.lang); } catch (_) { /* storage off */ }
      applyStaticI18n();
      if (S.who) navigate();
    });
    window.addEventListener('hashchange', () => {
      if ((location.hash || '').indexOf('#token=') === 0) {
        // A sign-in link opened in a signed-in tab.
        let tok = '';
        try { tok = decodeURIComponent(location.hash.slice(7)).trim(); } catch (_) { tok = ''; }
        history.replaceState(null, '', location.pathname + location.search);
        // Another credential: nothing of the previous one's pages may stay in the document.
        if (tok) { signOut(''); signIn(tok); }
        return;
      }
      navigate();
    });
    document.addEventListener('click', (ev) => {
      const btn = ev.target && ev.target.closest ? ev.target.closest('button.export') : null;
      if (btn) { ev.preventDefault(); doExport(btn); }
    });

    if (token) signIn(token);
    else showSignin('');
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
  else init();
})();
